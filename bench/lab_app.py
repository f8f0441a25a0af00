"""The lab's async app: twinstack's FastAPI app (``fastapi_service.main.create_app``) with the
labelled anti-patterns and their fixes added under /lab/, for claims 3, 9 and 14 to measure.
Do not copy the anti-patterns. The lab runs it on the async pool's own gunicorn.conf.py
(``lab.pool(..., app="bench.lab_app:create_app()")``); no deployment serves it.

Only ASGI has these failure modes: one event loop serves every request of the worker, so any
code that does not ``await`` stalls all of them. Each call is bounded far below gunicorn's
worker timeout (40 s), so no call can get its worker killed, and the process pool's queue is
bounded, so no work outlives its request by more than one call.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import time
from collections.abc import AsyncIterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Annotated

from fastapi import APIRouter, FastAPI, Query, Request
from pydantic import BaseModel, Field

from fastapi_service import flask_parity
from fastapi_service.errors import VALIDATION_ERROR_RESPONSE
from fastapi_service.main import create_app as create_twinstack_app
from fastapi_service.settings import Settings
from twinstack_contract.errors import ContractError
from twinstack_contract.models import CpuResult, ErrorBody, IoResult
from twinstack_db import probes
from twinstack_db.pool import NoEvents, SyncPool
from twinstack_db.session import Database
from twinstack_db.settings import PoolLimits
from twinstack_runtime.work import cpu_work, worker_id

router = APIRouter(prefix="/lab", responses=VALIDATION_ERROR_RESPONSE)

# The sync driver the blocking-db anti-pattern misuses: two connections a worker, outside the
# deployment's connection budget (the lab's PostgreSQL allows for them), opened on first use.
LAB_SYNC_POOL = PoolLimits(pool_size=2)
# Processes behind /lab/cpu-in-process-pool.
PROCESS_POOL_WORKERS = 1

# The longest a lab call may hold its worker: 2 s of blocking, or about 1 s of hashing.
MAX_BLOCK_MS = 2_000
MAX_WORK = 1_000_000


class BlockParams(BaseModel):
    delay_ms: int = Field(100, ge=0, le=MAX_BLOCK_MS, description="How long to block, in ms.")


class LabCpuParams(BaseModel):
    work: int = Field(10_000, ge=1, le=MAX_WORK, description="SHA-256 rounds to run.")


class ProcessPool:
    """The CPU fix's process pool: created on first use ("spawn": forking a process that runs
    an event loop and threads copies state it cannot use), at most two calls per process
    queued or running; more get 503 at once instead of work that outlives nginx's timeout."""

    def __init__(self, processes: int) -> None:
        self.processes = processes
        self.pending = 0  # touched only on the event loop: no lock needed
        self._executor: ProcessPoolExecutor | None = None

    async def run(self, work: int) -> str:
        if self.pending >= 2 * self.processes:
            raise ContractError(503, "lab_busy", "The process pool is busy; try again later.")
        if self._executor is None:
            self._executor = ProcessPoolExecutor(self.processes, mp_context=multiprocessing.get_context("spawn"))
        self.pending += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, cpu_work, work)
        finally:
            self.pending -= 1

    def shutdown(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)


def _io_result(params: BlockParams, start: float) -> IoResult:
    return IoResult(delay_ms=params.delay_ms, waited_ms=(time.perf_counter() - start) * 1000, served_by=worker_id())


@router.get("/blocking-sleep", tags=["lab: anti-pattern"])
async def blocking_sleep(params: Annotated[BlockParams, Query()]) -> IoResult:
    """ANTI-PATTERN: ``time.sleep`` inside ``async def`` freezes the loop for every request."""
    start = time.perf_counter()
    time.sleep(params.delay_ms / 1000)  # deliberately wrong: blocks the event loop
    return _io_result(params, start)


@router.get("/to-thread-sleep", tags=["lab: fix"])
async def to_thread_sleep(params: Annotated[BlockParams, Query()]) -> IoResult:
    """FIX: the same blocking call, moved off the loop with ``asyncio.to_thread``."""
    start = time.perf_counter()
    await asyncio.to_thread(time.sleep, params.delay_ms / 1000)
    return _io_result(params, start)


@router.get("/blocking-db", tags=["lab: anti-pattern"], responses={503: {"model": ErrorBody}})
async def blocking_db(params: Annotated[BlockParams, Query()], request: Request) -> IoResult:
    """ANTI-PATTERN: a sync database driver inside ``async def``. The query waits on the
    database, but the wait is a blocking socket read on the event loop: the whole worker
    stops for it, as with ``time.sleep``. The mistake looks like ordinary code (a sync
    SQLAlchemy engine, psycopg's sync connection, a sync ORM session)."""
    start = time.perf_counter()
    request.app.state.lab_sync_db.run(probes.hold(params.delay_ms))  # deliberately wrong: blocks the loop
    return _io_result(params, start)


@router.get("/to-thread-db", tags=["lab: fix"], responses={503: {"model": ErrorBody}})
async def to_thread_db(params: Annotated[BlockParams, Query()], request: Request) -> IoResult:
    """FIX: the same sync driver call, moved off the loop with ``asyncio.to_thread`` (for a
    library that has only a sync driver). Better still: an async driver, as GET /db uses."""
    start = time.perf_counter()
    await asyncio.to_thread(request.app.state.lab_sync_db.run, probes.hold(params.delay_ms))
    return _io_result(params, start)


@router.get("/cpu-in-loop", tags=["lab: anti-pattern"])
async def cpu_in_loop(params: Annotated[LabCpuParams, Query()]) -> CpuResult:
    """ANTI-PATTERN: hashing inside ``async def``: no other request runs until it ends."""
    start = time.process_time()
    digest = cpu_work(params.work)  # deliberately wrong: CPU work on the event loop
    return CpuResult(
        work=params.work, digest=digest, cpu_ms=(time.process_time() - start) * 1000, served_by=worker_id()
    )


@router.get("/cpu-in-process-pool", tags=["lab: fix"], responses={503: {"model": ErrorBody}})
async def cpu_in_process_pool(params: Annotated[LabCpuParams, Query()], request: Request) -> CpuResult:
    """FIX: the hashing runs in a process pool; the loop only awaits the result."""
    start = time.perf_counter()
    digest = await request.app.state.process_pool.run(params.work)
    # The CPU was spent in another process: report wall time, which is what the caller waited.
    return CpuResult(
        work=params.work, digest=digest, cpu_ms=(time.perf_counter() - start) * 1000, served_by=worker_id()
    )


def create_app(settings: Settings | None = None) -> FastAPI:
    """twinstack's app, plus /lab/* and what those routes use (the process pool and a sync
    pool), opened and closed with the app's own resources."""
    settings = settings or Settings()
    app = create_twinstack_app(settings)
    twinstack_lifespan = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with twinstack_lifespan(app), AsyncExitStack() as resources:
            lab_db = app.state.lab_sync_db = Database(
                SyncPool(settings, LAB_SYNC_POOL, "twinstack-async-lab", NoEvents())
            )
            resources.callback(lab_db.close)
            process_pool = app.state.process_pool = ProcessPool(PROCESS_POOL_WORKERS)
            resources.callback(process_pool.shutdown)
            yield

    app.router.lifespan_context = lifespan
    app.include_router(router)
    app.state.route_methods += flask_parity.route_methods([router])  # its 405s, as the app's own
    return app
