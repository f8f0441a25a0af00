"""The async serving model through nginx: the event loop holds every wait at once. How many
the app held at once is read from its own access log (tests/integration/load.py, burst)."""

from __future__ import annotations

import pytest

from tests.integration.load import DELAY_S, N, burst

pytestmark = pytest.mark.integration


def test_async_overlaps_all_waits(stack):
    at_once, bodies = burst(stack, "/async/io")
    # Two event loops hold the waits together: far more at once than the two workers.
    assert at_once >= N // 2, f"at most {at_once} of {N} waits at once"
    assert all(b["waited_ms"] >= DELAY_S * 1000 * 0.9 for b in bodies)
