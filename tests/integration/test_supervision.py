"""Native mode's promises: a crashed master comes back, a dead backend is a 502 JSON, and
up/down are idempotent and graceful."""

from __future__ import annotations

import os
import re
import signal
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.integration.conftest import Stack, make_stack, start

pytestmark = pytest.mark.integration


def program_pid(stack: Stack, program: str) -> int | None:
    match = re.search(rf"^{program}\s+RUNNING\s+pid (\d+)", stack.ctl("status"), re.M)
    return int(match.group(1)) if match else None


def wait_for(predicate, timeout: float = 30, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    pytest.fail(f"timed out waiting for {what}")


def test_each_pool_has_its_own_control_socket(stack: Stack):
    assert (stack.run_dir / "gunicorn-async.ctl").is_socket()
    assert (stack.run_dir / "gunicorn-sync.ctl").is_socket()


def test_crashed_master_is_restarted(stack: Stack, client: httpx.Client):
    old = program_pid(stack, "fastapi")
    assert old
    os.kill(old, signal.SIGKILL)
    new = wait_for(lambda: (pid := program_pid(stack, "fastapi")) and pid != old and pid, what="a new master")
    assert new != old
    wait_for(lambda: client.get("/async/health").status_code == 200, what="/async/health after restart")


def test_stopped_backend_is_a_502_json(stack: Stack, client: httpx.Client):
    stack.ctl("stop", "flask")
    try:
        r = client.get("/sync/health")
        assert r.status_code == 502
        assert r.json()["error"]["code"] == "bad_gateway"
        assert r.json()["error"]["request_id"] == r.headers["x-request-id"]
        assert client.get("/async/health").status_code == 200  # the other pool is unaffected
    finally:
        stack.ctl("start", "flask")
        wait_for(lambda: client.get("/sync/ready").status_code == 200, what="/sync/ready")


def test_up_and_down_are_idempotent_and_down_is_graceful(tmp_path, nginx_bin):
    own = make_stack(tmp_path)
    assert "not running" in own.native("down").stdout  # down with nothing running: harmless
    start(own)
    try:
        assert "already running" in own.native("up").stdout  # up twice: harmless
        with ThreadPoolExecutor(2) as pool, httpx.Client(base_url=own.base_url, timeout=30) as client:
            in_flight = [pool.submit(client.get, f"{p}/io?delay_ms=2000") for p in ("/async", "/sync")]
            time.sleep(0.7)  # both requests are inside a worker now
            down = own.native("down")
            assert "stopped" in down.stdout
            assert [f.result().status_code for f in in_flight] == [200, 200]
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{own.base_url}/", timeout=2)
        assert not (own.run_dir / "supervisord.pid").exists()
    finally:
        own.native("down", check=False)
