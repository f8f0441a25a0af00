"""What the async half alone shows an operator: its event loop's stall, as a gauge."""

from __future__ import annotations

import time

import pytest

from tests.integration.test_observability import metric

pytestmark = pytest.mark.integration


def test_loop_lag_gauge_rises_during_cpu_in_the_loop(stack, client):
    """The gauge shows a stall of the loop, and falls back once the loop runs freely again: it
    follows the loop, it is not stuck at a value (which a test right after CPU-heavy work could
    not tell from a real lag)."""
    r = client.get("/async/lab/cpu-in-loop?work=1000000")
    assert r.status_code == 200
    stalled_for = r.json()["cpu_ms"] / 1000
    lag = metric(stack, "async", "twinstack_event_loop_lag_seconds")
    assert lag >= stalled_for * 0.5, f"loop stalled {stalled_for:.2f} s, gauge shows {lag:.2f} s"
    deadline = time.monotonic() + 30
    while (lag := metric(stack, "async", "twinstack_event_loop_lag_seconds")) >= stalled_for * 0.5:
        assert time.monotonic() < deadline, f"the gauge stayed at {lag:.2f} s after the loop was free"
        time.sleep(0.2)
