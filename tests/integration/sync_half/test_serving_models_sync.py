"""The sync serving model through nginx: a worker holds one wait at a time, unless its worker
class says otherwise. How many the app held at once is read from its own access log
(tests/integration/load.py, burst)."""

from __future__ import annotations

import httpx
import pytest

from tests.integration.conftest import SYNC_WORKERS, running_stack
from tests.integration.load import burst

pytestmark = pytest.mark.integration


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
