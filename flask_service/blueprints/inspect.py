"""What the WSGI request object sees behind nginx."""

from __future__ import annotations

from flask import Blueprint, request

from twinstack_contract.models import Inspection
from twinstack_runtime.work import worker_id

bp = Blueprint("inspect", __name__)


@bp.get("/inspect")
def inspect() -> dict:
    return Inspection(
        framework="flask",
        client_ip=request.remote_addr,
        scheme=request.scheme,
        host=request.host,
        prefix=request.script_root,
        path=request.script_root + request.path,
        url=request.base_url,
        request_id=request.environ["twinstack.request_id"],
        via_trusted_proxy=request.environ["twinstack.via_trusted_proxy"],
        served_by=worker_id(),
    ).model_dump()
