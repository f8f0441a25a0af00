"""What each database route does, written once for both services (twinstack_db/operation.py
says how an operation runs). The logic (idempotency, paging, the 404s and the 409) lives here,
once; only the awaiting differs between the two services."""

from __future__ import annotations

import hashlib
import uuid
from typing import Any

from sqlalchemy import bindparam, select, tuple_
from sqlalchemy.dialects.postgresql import insert

from twinstack_contract.errors import ContractError
from twinstack_contract.models import Order as OrderBody
from twinstack_contract.models import OrderPage, OrderPageParams, StoredOrder

from .models import Order
from .operation import Operation, Query, Row, Statement

orders = Order.__table__
# Every column a client sends or the service computes, bound by name.
WRITTEN = ("id", "sku", "quantity", "unit_price_cents", "total_cents", "customer_email", "idempotency_key",
           "request_digest")  # fmt: skip
_INSERT = insert(orders).values({name: bindparam(name) for name in WRITTEN}).returning(*orders.c)
INSERT = Statement.of(_INSERT)
# With a key: the check and the insert are one statement (see create).
INSERT_ONCE = Statement.of(_INSERT.on_conflict_do_nothing(index_elements=[orders.c.idempotency_key]))
BY_KEY = Statement.of(select(orders).where(orders.c.idempotency_key == bindparam("key")))
BY_ID = Statement.of(select(orders).where(orders.c.id == bindparam("id")))
_NEWEST_FIRST = select(orders).order_by(orders.c.created_at.desc(), orders.c.id.desc()).limit(bindparam("limit"))
NEWEST = Statement.of(_NEWEST_FIRST)
# The page after an order: the orders before it in (created_at, id) order, through the index
# on both, however deep the page.
NEWEST_BEFORE = Statement.of(
    _NEWEST_FIRST.where(
        tuple_(orders.c.created_at, orders.c.id)
        < select(orders.c.created_at, orders.c.id).where(orders.c.id == bindparam("after")).scalar_subquery()
    )
)
ANCHOR = Statement.of(select(orders.c.id).where(orders.c.id == bindparam("after")))


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
    values: dict[str, Any] = {
        "id": uuid.uuid4(),
        "sku": order.sku,
        "quantity": order.quantity,
        "unit_price_cents": order.unit_price_cents,
        "total_cents": order.quantity * order.unit_price_cents,
        "customer_email": order.customer_email,
        "idempotency_key": key,
        "request_digest": digest(order) if key else None,
    }
    if key is None:
        return stored((yield Query(INSERT, values)), served_by), True
    row = yield Query(INSERT_ONCE, values)
    if row is not None:
        return stored(row, served_by), True
    first = yield Query(BY_KEY, {"key": key})
    if first["request_digest"] != values["request_digest"]:
        raise ContractError(
            409, "idempotency_conflict", "This Idempotency-Key was already used with a different request body."
        )
    return stored(first, served_by), False


def get(order_id: uuid.UUID, served_by: str) -> Operation:
    row = yield Query(BY_ID, {"id": order_id})
    if row is None:
        raise ContractError(404, "not_found", "No such order.")
    return stored(row, served_by)


def page(params: OrderPageParams, served_by: str) -> Operation:
    """Keyset pagination, newest first, one statement a page (two when the anchor is unknown,
    to tell a 404 from an empty page)."""
    limit = params.limit + 1  # one more than asked: whether there is a next page
    if params.after is None:
        rows = yield Query(NEWEST, {"limit": limit}, rows="all")
    else:
        rows = yield Query(NEWEST_BEFORE, {"limit": limit, "after": params.after}, rows="all")
        if not rows and (yield Query(ANCHOR, {"after": params.after})) is None:
            raise ContractError(404, "not_found", "No such order to page after.")
    more = len(rows) > params.limit
    found = [stored(row, served_by) for row in rows[: params.limit]]
    return OrderPage(orders=found, next_after=found[-1].order_id if more else None)
