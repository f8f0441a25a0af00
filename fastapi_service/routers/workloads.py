"""The measured workloads, written the way ASGI should be: waits never block the loop."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse

from twinstack_contract.models import (
    CpuParams,
    CpuResult,
    DbParams,
    FanoutParams,
    FanoutResult,
    IoParams,
    IoResult,
    StreamParams,
)
from twinstack_db import probes
from twinstack_runtime.work import cpu_work, stream_line, worker_id

from ..dependencies import DbDep, DownstreamDep
from ..errors import DATABASE_ERROR_RESPONSES, VALIDATION_ERROR_RESPONSE

router = APIRouter(tags=["workloads"], responses=VALIDATION_ERROR_RESPONSE)


@router.get("/io")
async def io(params: Annotated[IoParams, Query()]) -> IoResult:
    """I/O-bound: a non-blocking wait. Thousands can be in flight on one event loop."""
    start = time.perf_counter()
    await asyncio.sleep(params.delay_ms / 1000)
    return IoResult(delay_ms=params.delay_ms, waited_ms=(time.perf_counter() - start) * 1000, served_by=worker_id())


@router.get("/db", responses=DATABASE_ERROR_RESPONSES)
async def db(params: Annotated[DbParams, Query()], database: DbDep) -> IoResult:
    """I/O-bound on the database: one query that holds a pooled connection for ``delay_ms``.
    The loop serves others while it waits; the pool, not the loop, bounds how many run at once."""
    start = time.perf_counter()
    await database.run(probes.hold(params.delay_ms))
    return IoResult(delay_ms=params.delay_ms, waited_ms=(time.perf_counter() - start) * 1000, served_by=worker_id())


@router.get("/cpu")
def cpu(params: Annotated[CpuParams, Query()]) -> CpuResult:
    """CPU-bound: a plain ``def`` route, so FastAPI runs it in its thread pool and the event
    loop keeps serving. It still holds the GIL: one worker process does one hash at a time."""
    start = time.process_time()
    digest = cpu_work(params.work)
    return CpuResult(
        work=params.work, digest=digest, cpu_ms=(time.process_time() - start) * 1000, served_by=worker_id()
    )


@router.get("/fanout")
async def fanout(params: Annotated[FanoutParams, Query()], downstream: DownstreamDep) -> FanoutResult:
    """N downstream calls at once with ``asyncio.gather``: N waits cost one wait."""
    start = time.perf_counter()
    responses = await asyncio.gather(
        *(downstream.get("/delay", params={"ms": params.delay_ms}) for _ in range(params.calls))
    )
    for resp in responses:
        resp.raise_for_status()
    return FanoutResult(
        calls=params.calls,
        delay_ms=params.delay_ms,
        elapsed_ms=(time.perf_counter() - start) * 1000,
        mode="concurrent",
        served_by=worker_id(),
    )


@router.get("/stream", response_class=StreamingResponse, responses={200: {"content": {"application/x-ndjson": {}}}})
async def stream(params: Annotated[StreamParams, Query()]) -> StreamingResponse:
    """NDJSON lines sent as they are made; the loop serves others between them."""

    async def lines() -> AsyncIterator[bytes]:
        start = time.perf_counter()
        for i in range(params.chunks):
            if i:
                await asyncio.sleep(params.interval_ms / 1000)
            yield stream_line(i, params.chunks, start)

    return StreamingResponse(lines(), media_type="application/x-ndjson")
