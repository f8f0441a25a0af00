"""Liveness and readiness."""

from __future__ import annotations

import httpx
from flask import Blueprint

from twinstack_contract.errors import ContractError
from twinstack_contract.models import READY_CHECKS, Health
from twinstack_db import probes
from twinstack_runtime.work import worker_id

from ..extensions import db, downstream

bp = Blueprint("health", __name__)


@bp.get("/health")
def health() -> dict:
    """Liveness: the process answers. Touches no dependency."""
    return Health(status="ok", service="flask", served_by=worker_id()).model_dump()


@bp.get("/ready")
def ready() -> dict:
    """Readiness: the app is built, the downstream answers its own health check and the
    database a query."""
    try:
        resp = downstream.client.get("/health", timeout=2.0)
        resp.raise_for_status()
    except httpx.HTTPError as exc:
        raise ContractError(503, "not_ready", f"Downstream unreachable: {type(exc).__name__}.") from exc
    db.database.run(probes.ping())  # 503 database_unavailable / pool_exhausted
    return Health(status="ready", service="flask", served_by=worker_id(), checks=READY_CHECKS).model_dump()
