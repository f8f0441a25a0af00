"""The two serving models, shown through nginx: 50 concurrent waits of 200 ms each.

The event loop holds all 50 at once; a sync worker holds one. How many the app held at once
is read from its own access log (each request's end and duration), not timed by the client.
"""

from __future__ import annotations

import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.integration import logs
from tests.integration.conftest import SYNC_WORKERS, running_stack

pytestmark = pytest.mark.integration

N, DELAY_S = 50, 0.2


def burst(stack, path: str, n: int = N, delay_s: float = DELAY_S) -> tuple[int, list[dict]]:
    """``n`` concurrent waits; returns how many the app served at once (its own access log:
    each line's end time and duration, so no client-side clock or scheduling is measured)."""
    limits = httpx.Limits(max_connections=n, max_keepalive_connections=n)
    ids = [f"burst-{uuid.uuid4().hex}" for _ in range(n)]
    with httpx.Client(base_url=stack.base_url, timeout=60, limits=limits) as client:
        client.get(path.split("/io")[0] + "/health")  # warm up
        with ThreadPoolExecutor(n) as pool:
            responses = list(
                pool.map(
                    lambda rid: client.get(f"{path}?delay_ms={int(delay_s * 1000)}", headers={"X-Request-ID": rid}), ids
                )
            )
    assert [r.status_code for r in responses] == [200] * n
    service = "fastapi" if path.startswith("/async") else "flask"
    deadline = time.monotonic() + 10
    while len(served := logs.by_request_id(stack.log_dir, service, ids)) < n:
        assert time.monotonic() < deadline, f"{len(served)} of {n} access lines"
        time.sleep(0.1)
    return logs.max_overlap(map(logs.served_interval, served.values())), [r.json() for r in responses]


def test_async_overlaps_all_waits(stack):
    at_once, bodies = burst(stack, "/async/io")
    # Two event loops hold the waits together: far more at once than the two workers.
    assert at_once >= N // 2, f"at most {at_once} of {N} waits at once"
    assert all(b["waited_ms"] >= DELAY_S * 1000 * 0.9 for b in bodies)


def test_sync_is_bounded_by_its_workers(stack):
    at_once, bodies = burst(stack, "/sync/io")
    assert at_once <= SYNC_WORKERS, f"{at_once} waits at once on {SYNC_WORKERS} workers"
    assert len({b["served_by"] for b in bodies}) <= SYNC_WORKERS


@pytest.mark.parametrize(("worker_class", "min_at_once", "max_at_once"), [("gthread", 4, 4), ("gevent", 8, 12)])
def test_sync_worker_classes_change_the_bound(tmp_path, nginx_bin, worker_class, min_at_once, max_at_once):
    """One sync worker, 12 concurrent 300 ms waits: gthread holds 4 at a time (its threads),
    gevent most of them at once. The sync class would hold one."""
    with running_stack(
        tmp_path, TWINSTACK_SYNC_WORKER_CLASS=worker_class, TWINSTACK_SYNC_WORKERS="1", TWINSTACK_SYNC_THREADS="4"
    ) as own:
        n, delay = 12, 0.3
        with httpx.Client(base_url=own.base_url, timeout=60) as client:
            assert client.get("/sync/fanout?calls=2&delay_ms=10").status_code == 200
        at_once, _ = burst(own, "/sync/io", n, delay)
        # gthread: its 4 threads; gevent: most of the 12 (one worker, one process). The sync
        # worker class would hold one at a time.
        assert min_at_once <= at_once <= max_at_once, f"{worker_class}: {at_once} at once"
