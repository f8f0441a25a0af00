"""Native mode's promises: a crashed master comes back, a dead backend is a 502 JSON, and
up/down are idempotent and graceful."""

from __future__ import annotations

import os
import re
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

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


def children(pid: int) -> set[int]:
    return {int(p) for p in (Path(f"/proc/{pid}/task/{pid}/children").read_text().split())}


def parent(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.parametrize(("program", "prefix"), [("fastapi", "/async"), ("flask", "/sync")])
def test_crashed_master_is_restarted_and_its_workers_go_with_it(stack: Stack, client: httpx.Client, program, prefix):
    old = wait_for(lambda: program_pid(stack, program), what=f"{program} RUNNING")
    old_workers = children(old)
    assert old_workers
    os.kill(old, signal.SIGKILL)
    new = wait_for(lambda: (pid := program_pid(stack, program)) and pid != old and pid, what="a new master")
    # No orphan keeps serving (or holding the port) after its master died.
    wait_for(lambda: not any(alive(w) for w in old_workers), what="the old workers to exit")

    def served_by_new_master() -> bool:
        r = client.get(f"{prefix}/inspect")
        return r.status_code == 200 and parent(int(r.json()["served_by"])) == new

    wait_for(served_by_new_master, what=f"{prefix} served by the new master's workers")


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
