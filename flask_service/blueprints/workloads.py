"""The measured workloads, written the way WSGI runs them: every wait holds the worker."""

from __future__ import annotations

import time
from collections.abc import Iterator

from flask import Blueprint, Response

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

from ..extensions import db, downstream
from ..fastapi_parity import query

bp = Blueprint("workloads", __name__)


@bp.get("/io")
def io() -> dict:
    """I/O-bound: a blocking wait. A sync worker serves nothing else meanwhile."""
    params = query(IoParams)
    start = time.perf_counter()
    time.sleep(params.delay_ms / 1000)
    return IoResult(
        delay_ms=params.delay_ms, waited_ms=(time.perf_counter() - start) * 1000, served_by=worker_id()
    ).model_dump()


@bp.get("/db")
def db_wait() -> dict:
    """I/O-bound on the database: one query that holds a pooled connection for ``delay_ms``.
    The worker waits with it: concurrency is the number of workers."""
    params = query(DbParams)
    start = time.perf_counter()
    db.database.run(probes.hold(params.delay_ms))
    return IoResult(
        delay_ms=params.delay_ms, waited_ms=(time.perf_counter() - start) * 1000, served_by=worker_id()
    ).model_dump()


@bp.get("/cpu")
def cpu() -> dict:
    """CPU-bound: each worker process hashes on its own core, no event loop to stall."""
    params = query(CpuParams)
    start = time.process_time()
    digest = cpu_work(params.work)
    return CpuResult(
        work=params.work, digest=digest, cpu_ms=(time.process_time() - start) * 1000, served_by=worker_id()
    ).model_dump()


@bp.get("/fanout")
def fanout() -> dict:
    """N downstream calls one after another: N waits cost N waits."""
    params = query(FanoutParams)
    client = downstream.client
    start = time.perf_counter()
    for _ in range(params.calls):
        client.get("/delay", params={"ms": params.delay_ms}).raise_for_status()
    return FanoutResult(
        calls=params.calls,
        delay_ms=params.delay_ms,
        elapsed_ms=(time.perf_counter() - start) * 1000,
        mode="sequential",
        served_by=worker_id(),
    ).model_dump()


@bp.get("/stream")
def stream() -> Response:
    """NDJSON lines sent as they are made; the worker is held for the whole stream."""
    params = query(StreamParams)

    def lines() -> Iterator[bytes]:
        start = time.perf_counter()
        for i in range(params.chunks):
            if i:
                time.sleep(params.interval_ms / 1000)
            yield stream_line(i, params.chunks, start)

    return Response(lines(), mimetype="application/x-ndjson")
