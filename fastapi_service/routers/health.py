"""Liveness and readiness."""

from __future__ import annotations

import httpx
from fastapi import APIRouter, Request

from twinstack_contract.errors import ContractError
from twinstack_contract.models import READY_CHECKS, ErrorBody, Health
from twinstack_db import probes
from twinstack_runtime.work import worker_id

router = APIRouter(tags=["health"])


@router.get("/health")
async def health() -> Health:
    """Liveness: the process answers. Touches no dependency, so a slow downstream never
    gets a healthy worker restarted."""
    return Health(status="ok", service="fastapi", served_by=worker_id())


@router.get("/ready", responses={503: {"model": ErrorBody}})
async def ready(request: Request) -> Health:
    """Readiness: startup finished, the downstream answers its own health check and the
    database a query."""
    if not getattr(request.app.state, "started", False):
        # Checked first: before the lifespan ran there is no downstream client yet.
        raise ContractError(503, "not_ready", "Startup has not finished.")
    try:
        resp = await request.app.state.downstream.get("/health", timeout=2.0)
        resp.raise_for_status()
    except httpx.HTTPError as exc:
        raise ContractError(503, "not_ready", f"Downstream unreachable: {type(exc).__name__}.") from exc
    await request.app.state.db.run(probes.ping())  # 503 database_unavailable / pool_exhausted
    return Health(status="ready", service="fastapi", served_by=worker_id(), checks=READY_CHECKS)
