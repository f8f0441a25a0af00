"""What the sync half alone shows an operator: its workers busy, and its gauges and counters
over a dead worker and a restarted master."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.integration.conftest import SYNC_WORKERS
from tests.integration.test_observability import metric

pytestmark = pytest.mark.integration


def test_busy_workers_show_a_held_sync_worker(stack):
    assert metric(stack, "sync", "twinstack_workers") == SYNC_WORKERS
    slow = threading.Thread(target=httpx.get, args=(f"{stack.base_url}/sync/io?delay_ms=1500",), kwargs={"timeout": 10})
    slow.start()
    # One worker holds the slow request, the other answers this scrape: both busy. Polled
    # until the slow request is inside its worker (no fixed sleep).
    deadline = time.monotonic() + 5
    while (busy := metric(stack, "sync", "twinstack_workers_busy")) != SYNC_WORKERS:
        assert time.monotonic() < deadline, busy
        time.sleep(0.05)
    assert metric(stack, "sync", "twinstack_requests_in_flight") == 2
    slow.join()


def test_a_dead_workers_gauges_leave_the_metrics(stack):
    """child_exit drops a dead worker's live gauges (mark_process_dead): once the replacement
    has loaded the app (its gauge file exists), the pool counts exactly its workers, not the
    dead one too."""
    master = stack.master_pid("flask")
    children = Path(f"/proc/{master}/task/{master}/children")
    before = children.read_text().split()
    os.kill(int(before[0]), signal.SIGKILL)
    metrics_dir = stack.run_dir / "metrics-sync"
    deadline = time.monotonic() + 30
    while not (new := set(children.read_text().split()) - set(before)) or not any(
        metrics_dir.glob(f"gauge_livesum_{pid}.db") for pid in new
    ):
        assert time.monotonic() < deadline, "no replacement worker with its metrics"
        time.sleep(0.1)
    assert not list(metrics_dir.glob(f"gauge_live*_{before[0]}.db"))  # counters stay: they sum
    # The replacement sets its own gauge right after creating its file.
    while (workers := metric(stack, "sync", "twinstack_workers")) != SYNC_WORKERS:
        assert time.monotonic() < deadline, f"{workers} workers counted"
        time.sleep(0.1)


def test_a_new_master_starts_from_an_empty_metrics_directory(stack, client):
    """on_starting empties the pool's multiprocess directory: a restarted master's counters
    start at zero instead of adding up the previous run's files."""
    assert client.get("/sync/cpu?work=10").status_code == 200
    assert metric(stack, "sync", "twinstack_requests_total", route="/cpu") >= 1
    stack.ctl("restart", "flask")
    deadline = time.monotonic() + 30
    while client.get("/sync/ready").status_code != 200:
        assert time.monotonic() < deadline, "the sync pool did not come back"
        time.sleep(0.2)
    assert metric(stack, "sync", "twinstack_requests_total", route="/cpu") == 0
