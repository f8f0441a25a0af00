"""Orders, stored in PostgreSQL: the same operations as the Flask service
(twinstack_db.orders), awaited on this worker's async engine."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Header, Query, Request, Response

from twinstack_contract.models import (
    IDEMPOTENCY_KEY_MAX,
    IDEMPOTENCY_KEY_PATTERN,
    ErrorBody,
    Order,
    OrderPage,
    OrderPageParams,
    StoredOrder,
)
from twinstack_db import orders
from twinstack_runtime.work import worker_id

from ..dependencies import DbDep, JsonBody
from ..errors import DATABASE_ERROR_RESPONSES, VALIDATION_ERROR_RESPONSE

router = APIRouter(
    prefix="/orders", tags=["orders"], responses={**VALIDATION_ERROR_RESPONSE, **DATABASE_ERROR_RESPONSES}
)


@router.post(
    "",
    status_code=201,
    dependencies=[JsonBody],
    responses={
        400: {"model": ErrorBody},
        409: {"model": ErrorBody, "description": "The Idempotency-Key was used with another body."},
        415: {"model": ErrorBody},
    },
)
async def post_order(
    order: Order,
    db: DbDep,
    request: Request,
    response: Response,
    key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            description="Optional; a retry with the same key and body returns the same order.",
            pattern=IDEMPOTENCY_KEY_PATTERN,
            max_length=IDEMPOTENCY_KEY_MAX,
        ),
    ] = None,
) -> StoredOrder:
    """Store an order: 201 with its Location. 415 unless JSON, 400 if unparseable, 422 with
    details if invalid; with an Idempotency-Key, a retry returns the first order (no second row)."""
    stored, created = await db.run(orders.create(order, key, worker_id()))
    response.headers["Location"] = f"{request.scope.get('root_path', '')}/orders/{stored.order_id}"
    if not created:
        response.headers["Idempotent-Replayed"] = "true"
    return stored


@router.get("", responses={404: {"model": ErrorBody, "description": "No order has the id given as after."}})
async def list_orders(params: Annotated[OrderPageParams, Query()], db: DbDep) -> OrderPage:
    """Newest first, ``limit`` at a time; pass ``next_after`` as ``after`` for the next page."""
    return await db.run(orders.page(params, worker_id()))


@router.get("/{order_id}", responses={404: {"model": ErrorBody}})
async def get_order(order_id: UUID, db: DbDep) -> StoredOrder:
    """One order by its id: 404 when there is none, 422 when the id is not a UUID."""
    return await db.run(orders.get(order_id, worker_id()))
