"""What each database route does, written once for both services.

Each operation is a generator that yields a :class:`Query` (a statement, and whether it wants
one row or all of them) and receives its result; :mod:`twinstack_db.session` runs it on a sync
connection (Flask) or an async one (FastAPI). The logic (idempotency, paging, the 404s and the
409) lives here, once; only the awaiting differs between the two services. Every value reaches
SQL as a bound parameter, never as text.
"""

from __future__ import annotations

import hashlib
from collections.abc import Generator, Mapping
from dataclasses import dataclass
from typing import Any, Literal
from uuid import UUID

from sqlalchemy import Executable, func, select, text, tuple_
from sqlalchemy.dialects.postgresql import insert

from twinstack_contract.errors import ContractError
from twinstack_contract.models import Order as OrderBody
from twinstack_contract.models import OrderPage, OrderPageParams, StoredOrder

from .models import Order

orders = Order.__table__


@dataclass(frozen=True)
class Query:
    statement: Executable
    rows: Literal["one", "all"] = "one"


Row = Mapping[str, Any]
# Yields queries, receives a row (or None) or a list of rows, returns the answer.
Operation = Generator[Query, Any, Any]


def digest(order: OrderBody) -> str:
    """The body's fingerprint, stored with its Idempotency-Key: the same key sent with another
    body is a different request, not a retry."""
    return hashlib.sha256(order.model_dump_json().encode()).hexdigest()


def stored(row: Row, served_by: str) -> StoredOrder:
    return StoredOrder(
        order_id=str(row["id"]),
        sku=row["sku"],
        quantity=row["quantity"],
        unit_price_cents=row["unit_price_cents"],
        total_cents=row["total_cents"],
        customer_email=row["customer_email"],
        created_at=row["created_at"],
        served_by=served_by,
    )


def create(order: OrderBody, key: str | None, served_by: str) -> Operation:
    """Insert the order; with a key, a retry finds the first insert's row instead.

    ``ON CONFLICT DO NOTHING`` on the key's unique index makes the check and the insert one
    statement: two retries racing each other cannot both insert (the second waits for the
    first to commit, then inserts nothing). Returns the order and whether this call made it.
    """
    values = {
        "sku": order.sku,
        "quantity": order.quantity,
        "unit_price_cents": order.unit_price_cents,
        "total_cents": order.quantity * order.unit_price_cents,
        "customer_email": order.customer_email,
        "idempotency_key": key,
        "request_digest": digest(order) if key else None,
    }
    statement = insert(orders).values(**values).returning(*orders.c)
    if key is None:
        return stored((yield Query(statement)), served_by), True
    row = yield Query(statement.on_conflict_do_nothing(index_elements=[orders.c.idempotency_key]))
    if row is not None:
        return stored(row, served_by), True
    first = yield Query(select(orders).where(orders.c.idempotency_key == key))
    if first["request_digest"] != values["request_digest"]:
        raise ContractError(
            409, "idempotency_conflict", "This Idempotency-Key was already used with a different request body."
        )
    return stored(first, served_by), False


def get(order_id: UUID, served_by: str) -> Operation:
    row = yield Query(select(orders).where(orders.c.id == order_id))
    if row is None:
        raise ContractError(404, "not_found", "No such order.")
    return stored(row, served_by)


def page(params: OrderPageParams, served_by: str) -> Operation:
    """Keyset pagination, newest first: the page after an order is the orders before it in
    (created_at, id) order, found through the index on both, however deep the page."""
    newest_first = select(orders).order_by(orders.c.created_at.desc(), orders.c.id.desc()).limit(params.limit + 1)
    if params.after is not None:
        anchor = yield Query(select(orders.c.created_at, orders.c.id).where(orders.c.id == params.after))
        if anchor is None:
            raise ContractError(404, "not_found", "No such order to page after.")
        newest_first = newest_first.where(
            tuple_(orders.c.created_at, orders.c.id) < tuple_(anchor["created_at"], anchor["id"])
        )
    rows = yield Query(newest_first, rows="all")
    more = len(rows) > params.limit
    found = [stored(row, served_by) for row in rows[: params.limit]]
    return OrderPage(orders=found, next_after=found[-1].order_id if more else None)


def hold(delay_ms: int) -> Operation:
    """One round trip that keeps its connection for ``delay_ms``: the "database query"
    I/O workload (GET /db)."""
    yield Query(select(func.pg_sleep(delay_ms / 1000)))


def ping() -> Operation:
    yield Query(text("SELECT 1"))
