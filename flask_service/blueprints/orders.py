"""Orders, stored in PostgreSQL: the same operations as the FastAPI service
(twinstack_db.orders), run on this worker's sync engine."""

from __future__ import annotations

from flask import Blueprint, request
from flask.typing import ResponseReturnValue

from twinstack_contract.errors import idempotency_key, order_ref
from twinstack_contract.models import Order, OrderPageParams
from twinstack_db import orders
from twinstack_runtime.work import worker_id

from ..extensions import db
from ..fastapi_parity import json_body_and_header, query

bp = Blueprint("orders", __name__, url_prefix="/orders")


@bp.post("")
def post_order() -> ResponseReturnValue:
    """Store an order: 201 with its Location. 415 unless JSON, 400 if unparseable, 422 with
    details if invalid; with an Idempotency-Key, a retry returns the first order (no second row)."""
    order, key = json_body_and_header(Order, lambda: idempotency_key(request.headers.get("Idempotency-Key")))
    stored, created = db.database.run(orders.create(order, key, worker_id()))
    headers = {"Location": f"{request.script_root}/orders/{stored.order_id}"}
    if not created:
        headers["Idempotent-Replayed"] = "true"
    return stored.model_dump(mode="json"), 201, headers


@bp.get("")
def list_orders() -> dict:
    """Newest first, ``limit`` at a time; pass ``next_after`` as ``after`` for the next page."""
    return db.database.run(orders.page(query(OrderPageParams), worker_id())).model_dump(mode="json")


@bp.get("/<order_id>")
def get_order(order_id: str) -> dict:
    return db.database.run(orders.get(order_ref(order_id).order_id, worker_id())).model_dump(mode="json")
