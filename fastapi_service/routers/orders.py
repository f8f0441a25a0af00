"""Orders: a JSON body validated by the shared Pydantic model."""

from __future__ import annotations

from fastapi import APIRouter

from twinstack_contract.models import ErrorBody, Order, OrderCreated
from twinstack_runtime.work import create_order

from ..dependencies import JsonBody

router = APIRouter(prefix="/orders", tags=["orders"])


@router.post(
    "",
    status_code=201,
    dependencies=[JsonBody],
    responses={400: {"model": ErrorBody}, 415: {"model": ErrorBody}, 422: {"model": ErrorBody}},
)
async def post_order(order: Order) -> OrderCreated:
    """Create an order. 415 unless JSON, 400 if unparseable, 422 with details if invalid."""
    return create_order(order)
