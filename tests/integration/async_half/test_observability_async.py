"""What the async half alone shows an operator: its event loop's stall, as a gauge."""

from __future__ import annotations

import os
import signal
import time

import pytest

from tests.integration.test_observability import metric
from tests.integration.test_reliability import workers_of

pytestmark = pytest.mark.integration

STALL_S = 1.0


def test_loop_lag_gauge_rises_when_a_worker_stalls_and_falls_after(stack):
    """A worker whose loop runs nothing for a second (stopped with SIGSTOP, as code that never
    awaits would hold it) shows that second on the gauge once it runs again, and the gauge falls
    back once the loop runs freely: it follows the loop, it is not stuck at a value."""
    worker = workers_of(stack.master_pid("fastapi"))[0]
    os.kill(worker, signal.SIGSTOP)
    try:
        time.sleep(STALL_S)  # the stall itself, not a wait for something
    finally:
        os.kill(worker, signal.SIGCONT)
    deadline = time.monotonic() + 30
    while (lag := metric(stack, "async", "twinstack_event_loop_lag_seconds")) < STALL_S * 0.5:
        assert time.monotonic() < deadline, f"the loop stalled {STALL_S:.1f} s, the gauge shows {lag:.2f} s"
        time.sleep(0.1)
    while (lag := metric(stack, "async", "twinstack_event_loop_lag_seconds")) >= STALL_S * 0.5:
        assert time.monotonic() < deadline, f"the gauge stayed at {lag:.2f} s after the loop was free"
        time.sleep(0.2)
