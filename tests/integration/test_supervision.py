"""Native mode's promises: a crashed master comes back, a dead backend is a 502 JSON, and
up/down are idempotent and graceful."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.integration.conftest import Stack, make_stack, running_stack, start
from tests.support import HALVES, PREFIXES, ROOT

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


def requests_in_flight(port: str) -> float:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    return sum(float(v) for v in re.findall(r"^twinstack_requests_in_flight\{[^}]*\} (\S+)$", text, re.M))


def test_each_pool_has_its_own_control_socket(stack: Stack):
    for half in HALVES:
        assert (stack.run_dir / f"gunicorn-{half.prefix}.ctl").is_socket()


def children(pid: int) -> set[int]:
    return {int(p) for p in (Path(f"/proc/{pid}/task/{pid}/children").read_text().split())}


def parent(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.parametrize(("program", "prefix"), [(half.program, f"/{half.prefix}") for half in HALVES])
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
    stopped, *others = reversed(HALVES)  # the sync pool where there is one
    stack.ctl("stop", stopped.program)
    try:
        r = client.get(f"/{stopped.prefix}/health")
        assert r.status_code == 502
        assert r.json()["error"]["code"] == "bad_gateway"
        assert r.json()["error"]["request_id"] == r.headers["x-request-id"]
        for other in others:  # the other pool is unaffected
            assert client.get(f"/{other.prefix}/health").status_code == 200
    finally:
        stack.ctl("start", stopped.program)
        ready = f"/{stopped.prefix}/ready"
        wait_for(lambda: client.get(ready).status_code == 200, what=ready)


def test_up_and_down_are_idempotent_and_down_is_graceful(tmp_path, nginx_bin):
    own = make_stack(tmp_path)
    assert "not running" in own.native("down").stdout  # down with nothing running: harmless
    start(own)
    try:
        assert "already running" in own.native("up").stdout  # up twice: harmless
        with ThreadPoolExecutor(2) as pool, httpx.Client(base_url=own.base_url, timeout=30) as client:
            in_flight = [pool.submit(client.get, f"{p}/io?delay_ms=2000") for p in PREFIXES]
            for port in (own.env[f"TWINSTACK_{half.prefix.upper()}_PORT"] for half in HALVES):
                # Each request is inside a worker: in flight beside the scrape itself.
                wait_for(
                    lambda port=port: requests_in_flight(port) >= 2, timeout=10, what=f"a request in flight on {port}"
                )
            down = own.native("down")
            assert "stopped" in down.stdout
            assert [f.result().status_code for f in in_flight] == [200] * len(PREFIXES)
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{own.base_url}/", timeout=2)
        assert not (own.run_dir / "supervisord.pid").exists()
    finally:
        own.stop()


def test_down_stops_everything_when_supervisords_socket_does_not_answer(tmp_path, nginx_bin):
    """`native down` stops the programs itself over supervisord's socket, in order; with the
    socket gone it says so and falls back on supervisord's own shutdown, which stops them too."""
    own = make_stack(tmp_path)
    start(own)
    try:
        (own.run_dir / "supervisor.sock").unlink()
        down = own.native("down")
        assert down.returncode == 0, down.stderr
        assert "supervisord did not answer" in down.stdout and "twinstack stopped." in down.stdout
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{own.base_url}/", timeout=2)
        assert not (own.run_dir / "supervisord.pid").exists()
    finally:
        own.stop()


def make(stack: Stack, *args: str, **kwargs) -> subprocess.CompletedProcess[str]:
    """`make TARGET STACK=native` against this test's stack (its ports and directories come
    from the environment); never a Docker stack, whatever this machine runs."""
    return subprocess.run(
        ["make", "--no-print-directory", *args, "STACK=native"],
        cwd=ROOT,
        env=stack.env,
        capture_output=True,
        text=True,
        timeout=120,
        **kwargs,
    )


def test_make_status_shows_each_program_and_fails_when_the_stack_does_not_answer(stack: Stack):
    programs = ("downstream", *(half.program for half in HALVES), "nginx", "locust")

    def all_running() -> subprocess.CompletedProcess[str] | None:
        # supervisord says STARTING for a program's first seconds (startsecs).
        r = make(stack, "status")
        return r if all(re.search(rf"^{p}\s+RUNNING", r.stdout, re.M) for p in programs) else None

    ok = wait_for(all_running, what="every program RUNNING")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    # The suite's stack serves HTTPS (conftest.tls_settings): its page and each pool through it,
    # its plain port, and the Locust UI.
    assert len(re.findall(r"^\s+200\s+https://", ok.stdout, re.M)) == 1 + len(HALVES), ok.stdout
    assert len(re.findall(r"^\s+200\s+http://", ok.stdout, re.M)) == 2, ok.stdout
    # Every program still RUNNING, but the downstream frozen: the stack does not answer ready.
    downstream = program_pid(stack, "downstream")
    os.kill(downstream, signal.SIGSTOP)
    try:
        frozen = make(stack, "status")
        assert frozen.returncode != 0, frozen.stdout
        assert re.search(r"^downstream\s+RUNNING", frozen.stdout, re.M), frozen.stdout
        assert re.search(rf"^\s+(503|down)\s+https://\S+{PREFIXES[-1]}/ready$", frozen.stdout, re.M), frozen.stdout
    finally:
        os.kill(downstream, signal.SIGCONT)
    stack.ctl("stop", "downstream")
    try:
        down = make(stack, "status")
        assert down.returncode != 0
        assert re.search(r"^downstream\s+STOPPED", down.stdout, re.M), down.stdout
    finally:
        stack.ctl("start", "downstream")
        wait_for(lambda: make(stack, "status").returncode == 0, what="the stack to answer again")


def test_make_logs_follows_every_program(stack: Stack):
    """It shows every program's log, then keeps following: a request made after the last
    header appears too (a `tail` without -F would have ended, or never shown it)."""
    marker = f"{PREFIXES[0]}/follow-{uuid.uuid4().hex}"
    programs = {half.program for half in HALVES}
    with subprocess.Popen(
        ["make", "--no-print-directory", "logs", "STACK=native"],
        cwd=ROOT,
        env=stack.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    ) as follow:
        try:
            seen, deadline, requested, followed = set(), time.monotonic() + 20, False, False
            for line in follow.stdout:
                if m := re.match(r"^==> .*/([\w-]+)\.log <==$", line.strip()):
                    seen.add(m.group(1))
                if not requested and {"nginx", "nginx-error", *programs, "downstream", "locust"} <= seen:
                    assert httpx.get(stack.base_url + marker, timeout=10).status_code == 404
                    requested = True
                if requested and marker in line:
                    followed = True
                    break
                assert time.monotonic() < deadline, (seen, requested)
        finally:
            os.killpg(follow.pid, signal.SIGTERM)
    assert {"nginx", *programs} <= seen
    assert followed, "make logs stopped following"


def test_make_reload_with_a_broken_nginx_config_keeps_the_stack_serving(stack: Stack):
    nginx_master = program_pid(stack, "nginx")
    running = (stack.run_dir / "nginx" / "conf.d" / "cors.conf").read_text()
    broken = {**stack.env, "TWINSTACK_CORS_ORIGIN_REGEX": "(unclosed"}  # nginx -t: pcre fails
    result = subprocess.run(
        ["make", "--no-print-directory", "reload", "STACK=native"],
        cwd=ROOT,
        env=broken,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0 and "nginx -t failed" in result.stderr, result.stdout + result.stderr
    assert (stack.run_dir / "nginx" / "conf.d" / "cors.conf").read_text() == running  # untouched
    assert program_pid(stack, "nginx") == nginx_master
    with httpx.Client(base_url=stack.base_url, timeout=10) as client:
        for path in ("/", *(f"{prefix}/ready" for prefix in PREFIXES)):
            assert client.get(path).status_code == 200, path


def test_the_database_outlives_a_restart_and_only_delete_data_removes_it(tmp_path, nginx_bin):
    """Orders are kept across `make down` / `make up` (the cluster is not in run/'s scratch
    when root runs it, and never recreated); `python -m native delete-data` (make clean)
    removes it, and refuses while the stack runs."""
    import json

    import psycopg

    with running_stack(tmp_path) as own:
        env = json.loads(own.native("env").stdout)
        url, data = env["TWINSTACK_DATABASE_URL"], Path(env["TWINSTACK_PG_DATA"])
        with psycopg.connect(url) as conn:
            conn.execute(
                "INSERT INTO orders (id, sku, quantity, unit_price_cents, total_cents, customer_email) "
                "VALUES (gen_random_uuid(), 'KEEP-1', 1, 100, 100, 'a@b.co')"
            )
        own.native("down")
        assert data.joinpath("PG_VERSION").exists()
        own.native("up")
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT count(*) FROM orders WHERE sku = 'KEEP-1'").fetchone() == (1,)
        refused = own.native("delete-data", check=False)
        assert refused.returncode == 1 and "stop it first" in refused.stderr
        own.native("down")
        own.native("delete-data")
        assert not data.exists()
