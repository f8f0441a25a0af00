"""App factory: ``uvicorn --factory downstream_service.main:create_app``."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import FastAPI, Query

from twinstack_contract.models import MAX_DELAY_MS


def create_app() -> FastAPI:
    app = FastAPI(title="twinstack downstream", docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok", "service": "downstream"}

    @app.get("/delay")
    async def delay(ms: Annotated[int, Query(ge=0, le=MAX_DELAY_MS)] = 100) -> dict[str, int]:
        """Answer after ``ms`` milliseconds, like a dependency with that latency."""
        await asyncio.sleep(ms / 1000)
        return {"delayed_ms": ms}

    return app
