"""Labelled anti-patterns and their fixes, for the lab to measure. Do not copy the first two.

Only ASGI has these failure modes: one event loop serves every request of the worker, so any
code that does not ``await`` stalls all of them.
"""

from __future__ import annotations

import asyncio
import time
from typing import Annotated

from fastapi import APIRouter, Query, Request

from twinstack_contract.models import CpuParams, CpuResult, IoParams, IoResult
from twinstack_contract.work import cpu_work, worker_id

router = APIRouter(prefix="/lab")


def _io_result(params: IoParams, start: float) -> IoResult:
    return IoResult(delay_ms=params.delay_ms, waited_ms=(time.perf_counter() - start) * 1000, served_by=worker_id())


@router.get("/blocking-sleep", tags=["lab: anti-pattern"])
async def blocking_sleep(params: Annotated[IoParams, Query()]) -> IoResult:
    """ANTI-PATTERN: ``time.sleep`` inside ``async def`` freezes the loop for every request."""
    start = time.perf_counter()
    time.sleep(params.delay_ms / 1000)  # deliberately wrong: blocks the event loop
    return _io_result(params, start)


@router.get("/to-thread-sleep", tags=["lab: fix"])
async def to_thread_sleep(params: Annotated[IoParams, Query()]) -> IoResult:
    """FIX: the same blocking call, moved off the loop with ``asyncio.to_thread``."""
    start = time.perf_counter()
    await asyncio.to_thread(time.sleep, params.delay_ms / 1000)
    return _io_result(params, start)


@router.get("/cpu-in-loop", tags=["lab: anti-pattern"])
async def cpu_in_loop(params: Annotated[CpuParams, Query()]) -> CpuResult:
    """ANTI-PATTERN: hashing inside ``async def``: no other request runs until it ends."""
    start = time.process_time()
    digest = cpu_work(params.work)  # deliberately wrong: CPU work on the event loop
    return CpuResult(
        work=params.work, digest=digest, cpu_ms=(time.process_time() - start) * 1000, served_by=worker_id()
    )


@router.get("/cpu-in-process-pool", tags=["lab: fix"])
async def cpu_in_process_pool(params: Annotated[CpuParams, Query()], request: Request) -> CpuResult:
    """FIX: the hashing runs in a process pool; the loop only awaits the result."""
    start = time.perf_counter()
    loop = asyncio.get_running_loop()
    digest = await loop.run_in_executor(request.app.state.process_pool(), cpu_work, params.work)
    # The CPU was spent in another process: report wall time, which is what the caller waited.
    return CpuResult(
        work=params.work, digest=digest, cpu_ms=(time.perf_counter() - start) * 1000, served_by=worker_id()
    )
