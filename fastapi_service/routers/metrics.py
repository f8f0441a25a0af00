"""Prometheus metrics, for the stack's own scraper only."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from twinstack_contract.errors import ContractError

router = APIRouter(tags=["operations"])


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    """Every worker's metrics. nginx refuses /async/metrics publicly; should a request still
    arrive through the public proxy (it carries the prefix), it gets a 404 here too."""
    if request.scope.get("root_path"):
        raise ContractError(404, "not_found", "Not Found")
    body, content_type = request.app.state.metrics.exposition()
    return Response(body, media_type=content_type)
