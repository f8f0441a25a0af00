"""Orders: a JSON body validated explicitly with the shared Pydantic model."""

from __future__ import annotations

from flask import Blueprint

from twinstack_contract.models import Order
from twinstack_runtime.work import create_order

from ..fastapi_parity import json_body

bp = Blueprint("orders", __name__, url_prefix="/orders")


@bp.post("")
def post_order() -> tuple[dict, int]:
    """Create an order. 415 unless JSON, 400 if unparseable, 422 with details if invalid."""
    return create_order(json_body(Order)).model_dump(), 201
