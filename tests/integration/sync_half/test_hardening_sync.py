"""What one hostile or greedy client can do to the sync half only: its pool's workers, its jobs
over a reload, the pool down. On a stack as deployed, the fixture of
tests/integration/test_hardening.py (its docstring says how other clients are made)."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections import Counter

import pytest

from tests.integration import logs
from tests.integration import test_hardening as hardening
from tests.integration.conftest import Stack
from tests.integration.test_hardening import SYNC_PER_CLIENT, check_shares, client_from, greedy, wait_job
from tests.support import ROOT

pytestmark = pytest.mark.integration

# The stack as deployed, with its small per-client limits: one of this module's own.
deployed = hardening.deployed


# --- 6. Greedy clients ---------------------------------------------------------------------------


def test_a_greedy_client_cannot_lock_others_out_of_the_sync_pool(deployed: Stack):
    """One address holds at most SYNC_PER_CLIENT of the sync workers; another is served by a free
    one while the greedy requests let in are still running. With no per-client limit, the
    greedy requests hold every worker and the other waits until they finish."""
    paths = ["/sync/io?delay_ms=3000"] * (SYNC_PER_CLIENT + 4)
    with (
        client_from(deployed, "127.0.0.3") as other,
        greedy(deployed, "127.0.0.2", paths, SYNC_PER_CLIENT) as (_, slow),
    ):
        assert other.get("/sync/io?delay_ms=10").status_code == 200
        assert not all(f.done() for f in slow), "the other client was answered only after the greedy one"
        check_shares([f.result() for f in slow], SYNC_PER_CLIENT)


# --- 2 and 3. Jobs: never blocking, never stuck; the pool down -----------------------------------


def test_a_reload_fails_queued_jobs_at_once_and_never_blocks_health(deployed: Stack):
    with client_from(deployed, "127.0.0.8") as client:
        jobs = [client.post("/sync/jobs", json={"delay_ms": 20_000}) for _ in range(4)]
        accepted = [r.json() for r in jobs if r.status_code == 202]
        assert accepted
        reload = subprocess.Popen(
            [sys.executable, "-m", "native", "reload"], cwd=ROOT, env=deployed.env, stdout=subprocess.DEVNULL
        )
        health = Counter()
        while reload.poll() is None:  # under the expensive paths' rate (/sync is one)
            health[client.get("/sync/health").status_code] += 1
            time.sleep(0.4)
        assert reload.returncode == 0
        for _ in range(5):
            health[client.get("/sync/health").status_code] += 1
        assert set(health) == {200}, health
        # Queued ones are failed at once, the running one after the stop grace (5 s).
        ended = [wait_job(client, f"/sync/jobs/{j['job_id']}", ("failed", "done"), timeout_s=15) for j in accepted]
        assert all(j["status"] == "failed" and j["error"] for j in ended), ended


def test_a_pool_that_is_down_gets_502_json_for_get_and_post_alike(deployed: Stack):
    """The retry location's own failure (no pool at all) is the same JSON 502, and a POST is
    tried once: one upstream attempt in nginx's log. Last in this file: it stops a pool."""
    assert "stopped" in deployed.ctl("stop", "flask")
    try:
        with client_from(deployed, "127.0.0.11") as client:
            for r in (client.get("/sync/health"), client.post("/sync/orders", json={}), client.get("/sync/stream")):
                assert r.status_code == 502 and r.json()["error"]["code"] == "bad_gateway", r.text
                line = logs.by_request_id(deployed.log_dir, "nginx", [r.headers["x-request-id"]])[
                    r.headers["x-request-id"]
                ]
                attempts = len(re.split(r"[,:] ", line["upstream_addr"]))
                assert attempts == (1 if r.request.method == "POST" else 2), line
    finally:
        deployed.ctl("start", "flask")
