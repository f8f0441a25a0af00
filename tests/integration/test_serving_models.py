"""The two serving models, shown through nginx: 50 concurrent waits of 200 ms each.

The event loop holds all 50 at once; a sync worker holds one, so the sync pool needs about
ceil(50 / workers) rounds. Only the shape is asserted, with wide margins: no tight timings.
"""

from __future__ import annotations

import math
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.integration.conftest import SYNC_WORKERS, running_stack

pytestmark = pytest.mark.integration

N, DELAY_S = 50, 0.2


def burst(base_url: str, path: str) -> tuple[float, list[dict]]:
    limits = httpx.Limits(max_connections=N, max_keepalive_connections=N)
    with httpx.Client(base_url=base_url, timeout=60, limits=limits) as client:
        client.get(path.split("/io")[0] + "/health")  # warm up
        start = time.perf_counter()
        with ThreadPoolExecutor(N) as pool:
            responses = list(pool.map(lambda _: client.get(f"{path}?delay_ms={int(DELAY_S * 1000)}"), range(N)))
        elapsed = time.perf_counter() - start
    assert [r.status_code for r in responses] == [200] * N
    return elapsed, [r.json() for r in responses]


def test_async_overlaps_all_waits(stack):
    elapsed, bodies = burst(stack.base_url, "/async/io")
    serial = N * DELAY_S  # 10 s if the waits did not overlap
    assert elapsed < serial / 4, f"{N} concurrent waits took {elapsed:.2f} s"
    assert all(b["waited_ms"] >= DELAY_S * 1000 * 0.9 for b in bodies)


def test_sync_is_bounded_by_its_workers(stack):
    elapsed, bodies = burst(stack.base_url, "/sync/io")
    rounds = math.ceil(N / SYNC_WORKERS)
    assert elapsed >= rounds * DELAY_S * 0.8, f"{N} waits on {SYNC_WORKERS} workers took only {elapsed:.2f} s"
    assert len({b["served_by"] for b in bodies}) <= SYNC_WORKERS


@pytest.mark.parametrize(("worker_class", "max_rounds", "min_rounds"), [("gthread", 4, 3), ("gevent", 2, 1)])
def test_sync_worker_classes_change_the_bound(tmp_path, nginx_bin, worker_class, max_rounds, min_rounds):
    """One sync worker, 12 concurrent 300 ms waits: gthread runs 4 at a time (3 rounds),
    gevent all of them at once (1 round). The sync class would need 12 rounds."""
    with running_stack(
        tmp_path, TWINSTACK_SYNC_WORKER_CLASS=worker_class, TWINSTACK_SYNC_WORKERS="1", TWINSTACK_SYNC_THREADS="4"
    ) as own:
        n, delay = 12, 0.3
        with httpx.Client(base_url=own.base_url, timeout=60, limits=httpx.Limits(max_connections=n)) as client:
            assert client.get("/sync/fanout?calls=2&delay_ms=10").status_code == 200
            begin = time.perf_counter()
            with ThreadPoolExecutor(n) as pool:
                codes = list(
                    pool.map(lambda _: client.get(f"/sync/io?delay_ms={int(delay * 1000)}").status_code, range(n))
                )
            elapsed = time.perf_counter() - begin
        assert codes == [200] * n
        assert min_rounds * delay * 0.8 <= elapsed < (max_rounds + 1) * delay + 1.0, f"{worker_class}: {elapsed:.2f} s"
        assert elapsed < n * delay * 0.6  # clearly better than one at a time
