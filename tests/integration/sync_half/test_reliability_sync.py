"""The sync pool under more than it can take, through nginx."""

from __future__ import annotations

from collections import Counter

import httpx
import pytest

from tests.integration import logs
from tests.integration.conftest import running_stack
from tests.support import PREFIXES

pytestmark = pytest.mark.integration


def test_overload_is_shed_fast_and_the_pool_recovers(tmp_path, nginx_bin):
    # One client sends all of it: its own share is the whole pool's here (the per-client
    # share is tests/integration/test_hardening.py's).
    with running_stack(
        tmp_path,
        TWINSTACK_SYNC_WORKERS="2",
        TWINSTACK_SYNC_MAX_INFLIGHT="10",
        TWINSTACK_SYNC_MAX_INFLIGHT_PER_CLIENT="10",
    ) as own:
        n = 40
        limits = httpx.Limits(max_connections=n)
        with httpx.Client(base_url=own.base_url, timeout=30, limits=limits) as client:

            def timed_get(_: int) -> tuple[int, str, dict]:
                r = client.get("/sync/io?delay_ms=1500")
                return r.status_code, r.headers["x-request-id"], r.json()

            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(n) as pool:
                results = list(pool.map(timed_get, range(n)))
            shed = [(rid, body) for status, rid, body in results if status == 503]
            served = [rid for status, rid, _ in results if status == 200]
            assert len(served) <= 10 and len(shed) >= n - 10, Counter(s for s, _, _ in results)
            assert all(body["error"]["code"] == "unavailable" for _, body in shed)
            # Answered at once by nginx, not after waiting in a queue: no shed request ever
            # reached the pool (nginx's log has no upstream for it).
            edge = logs.by_request_id(own.log_dir, "nginx", [rid for rid, _ in shed])
            assert len(edge) == len(shed) and all(r["upstream_addr"] == "" for r in edge.values()), edge
            # Recovered: within the limit, everything is served again.
            with ThreadPoolExecutor(8) as pool:
                assert set(pool.map(lambda _: client.get("/sync/io?delay_ms=100").status_code, range(8))) == {200}
            if "/async" in PREFIXES:  # the async pool, where there is one, was never limited
                assert client.get("/async/io?delay_ms=1").status_code == 200
