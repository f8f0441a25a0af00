"""What the ASGI Request object sees behind nginx."""

from __future__ import annotations

from fastapi import APIRouter, Request

from twinstack_contract.models import Inspection
from twinstack_runtime.work import worker_id

router = APIRouter(tags=["inspect"])


@router.get("/inspect")
async def inspect(request: Request) -> Inspection:
    return Inspection(
        framework="fastapi",
        client_ip=request.client.host if request.client else None,
        scheme=request.url.scheme,
        host=request.headers.get("host", ""),
        prefix=request.scope.get("root_path", ""),
        path=request.url.path,
        url=str(request.url),
        request_id=request.state.request_id,
        via_trusted_proxy=request.state.via_trusted_proxy,
        served_by=worker_id(),
    )
