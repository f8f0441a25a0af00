"""What one hostile or greedy client on the public port can do, tried through the real stack
with the deployment's defaults (no lab routes), each class of attack in several variants.

Clients other than 127.0.0.1 are other loopback addresses (127.0.0.0/8 is all loopback on
Linux): nginx keys its per-client limits on the TCP peer, so they count as other clients.
"""

from __future__ import annotations

import base64
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from tests.integration import logs
from tests.integration.conftest import Stack, running_stack
from tests.support import ROOT

pytestmark = pytest.mark.integration

WS_PER_CLIENT = 4
# What one client may hold stays below what the pools have (3 sync workers; 2 async workers x 3
# connections), so it leaves room for another: the greedy-client tests see the difference.
WORKERS = {"/async": 2, "/sync": 3}
JOB_CAPACITY = 2  # a worker's, with one job thread
SYNC_PER_CLIENT = 2
CLIENT_MAX_CONNS = 12  # requests in progress from one address, any path (512 by default)
ASYNC_DB_POOL_SIZE = 3
ASYNC_DB_PER_CLIENT = 2


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory, nginx_bin: str) -> Iterator[Stack]:
    """A stack as deployed (lab routes off), with small per-client limits to reach quickly."""
    with running_stack(
        tmp_path_factory.mktemp("hardening"),
        TWINSTACK_LAB_ROUTES="false",
        TWINSTACK_WS_MAX_PER_CLIENT=str(WS_PER_CLIENT),
        TWINSTACK_CLIENT_MAX_CONNS=str(CLIENT_MAX_CONNS),
        TWINSTACK_SYNC_MAX_INFLIGHT="40",
        TWINSTACK_SYNC_MAX_INFLIGHT_PER_CLIENT=str(SYNC_PER_CLIENT),
        TWINSTACK_ASYNC_DB_MAX_INFLIGHT_PER_CLIENT=str(ASYNC_DB_PER_CLIENT),
        TWINSTACK_ASYNC_DB_POOL_SIZE=str(ASYNC_DB_POOL_SIZE),
        TWINSTACK_EXPENSIVE_RATE_LIMIT_RPS="2",
        TWINSTACK_EXPENSIVE_RATE_LIMIT_BURST="20",
        TWINSTACK_ASYNC_WORKERS=str(WORKERS["/async"]),
        TWINSTACK_SYNC_WORKERS=str(WORKERS["/sync"]),
        TWINSTACK_JOB_THREADS="1",
        TWINSTACK_JOB_CAPACITY=str(JOB_CAPACITY),
    ) as stack:
        yield stack


def client_from(stack: Stack, address: str, **kwargs) -> httpx.Client:
    """An HTTP client whose connections come from ``address`` (another client, to nginx)."""
    transport = httpx.HTTPTransport(local_address=address)
    return httpx.Client(base_url=stack.base_url, timeout=30, transport=transport, **kwargs)


def raw(stack: Stack, request: bytes) -> bytes:
    """Send bytes as they are (request lines httpx would not write) and read the answer."""
    with socket.create_connection(("127.0.0.1", int(stack.env["TWINSTACK_HTTP_PORT"])), timeout=10) as sock:
        sock.sendall(request)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


# --- 1. The lab's anti-patterns are not part of a deployment --------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/async/lab/blocking-sleep?delay_ms=30000",
        "/async/lab/cpu-in-loop?work=2000000",
        "/async/lab/cpu-in-process-pool?work=2000000",
        "/async/lab/to-thread-sleep?delay_ms=30000",
        "/async/lab/blocking-sleep/",
        "/async//lab/blocking-sleep",
        "/async/%6cab/blocking-sleep",
        "/async/LAB/blocking-sleep",
    ],
)
def test_lab_routes_do_not_exist_in_a_deployment(deployed: Stack, path: str):
    with deployed.client() as client:
        t0 = time.monotonic()
        r = client.get(path)
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found", path
        assert time.monotonic() - t0 < 5  # nothing slept or hashed
        assert not [p for p in client.get("/async/openapi.json").json()["paths"] if "lab" in p]


# --- 4. Methods: a closed set at the edge and in the metrics -----------------------------------


@pytest.mark.parametrize("prefix", ["/async/health", "/sync/health", "/static/style.css", "/"])
@pytest.mark.parametrize("method", ["FOO", "PUT", "DELETE", "PATCH", "TRACE", "PROPFIND", "ABCDEFGHIJKLMNOPQRSTU"])
def test_methods_outside_the_api_get_501_json_from_nginx(deployed: Stack, prefix: str, method: str):
    with deployed.client() as client:
        r = client.request(method, prefix)
    # TRACE is refused by nginx's core before any configuration runs: its own 405, as JSON.
    expected = (405, "method_not_allowed") if method == "TRACE" else (501, "not_implemented")
    assert (r.status_code, r.json()["error"]["code"]) == expected, (method, prefix, r.text)
    assert r.headers["content-type"] == "application/json"


def test_invented_methods_sent_straight_to_a_pool_add_no_metrics_series(deployed: Stack):
    """nginx refuses them; a request that reaches a pool's port directly still cannot mint a
    series: the method label comes from a closed set. (uvicorn's parser refuses most invented
    methods itself; gunicorn passes them to Flask, which counts them as OTHER.)"""
    for pool, port in (("async", deployed.env["TWINSTACK_ASYNC_PORT"]), ("sync", deployed.env["TWINSTACK_SYNC_PORT"])):
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as direct:
            for i in range(30):
                direct.request(f"M{i:04d}", "/health")
            metrics = direct.get("/metrics").text
        methods = set(re.findall(r'twinstack_requests_total\{[^}]*method="([^"]+)"', metrics))
        assert methods <= {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "OTHER"}, (pool, methods)
        assert pool == "async" or "OTHER" in methods, pool


# --- 7. Host: only the validated name is forwarded ----------------------------------------------


@pytest.mark.parametrize(
    "request_line",
    [
        b"GET http://localhost/async/health/ HTTP/1.1\r\nHost: evil.example\r\n",
        b"GET http://127.0.0.1/async/health/ HTTP/1.1\r\nHost: evil.example:8080\r\n",
        b"GET http://localhost/async/inspect HTTP/1.1\r\nHost: evil.example\r\nX-Forwarded-Host: evil.example\r\n",
        b"GET http://localhost/sync/inspect HTTP/1.1\r\nHost: evil.example\r\n",
        b"GET http://LOCALHOST/sync/inspect HTTP/1.1\r\nHost: localhost.evil.example\r\n",
    ],
)
def test_a_forged_host_never_reaches_a_pool(deployed: Stack, request_line: bytes):
    answer = raw(deployed, request_line + b"Connection: close\r\n\r\n")
    assert b"evil" not in answer, answer.decode(errors="replace")
    assert answer.startswith((b"HTTP/1.1 200", b"HTTP/1.1 307", b"HTTP/1.1 404")), answer[:200]


def test_the_clients_own_host_and_port_are_kept(deployed: Stack):
    port = deployed.env["TWINSTACK_HTTP_PORT"]
    with deployed.client() as client:
        for prefix in ("/async", "/sync"):
            assert client.get(f"{prefix}/inspect").json()["host"] == f"127.0.0.1:{port}"
            r = client.get(f"{prefix}/inspect", headers={"Host": f"LocalHost:{port}"})
            assert r.json()["host"].lower() == f"localhost:{port}"
            assert client.get(f"{prefix}/health/").status_code == 404  # no redirect built from a Host


# --- 9. Files, workers, identity ---------------------------------------------------------------


@pytest.mark.skipif(os.geteuid() != 0, reason="plants files in the served copy, which only a root run makes")
def test_nginx_serves_only_its_routes_no_dotfile_no_symlink(deployed: Stack):
    web_root = Path(_web_root(deployed))
    assert web_root != ROOT / "nginx" / "html"  # a per-stack copy, never the checkout
    (web_root / ".secret").write_text("secret\n")
    (web_root / "static" / ".hidden.css").write_text("secret\n")
    (web_root / "static" / "passwd.css").symlink_to("/etc/passwd")
    (web_root / "static" / "dir").mkdir()
    with deployed.client() as client:
        paths = ("/index.html", "/.secret", "/static/.hidden.css", "/static/passwd.css", "/static/", "/static/dir/")
        for path in paths:
            r = client.get(path)
            assert r.status_code in (403, 404), (path, r.status_code)
            assert "secret" not in r.text and "root:" not in r.text, path
            assert r.headers["content-type"] == "application/json", path
        assert client.get("/static/style.css").status_code == 200


def _web_root(stack: Stack) -> str:
    from native.settings import StackSettings

    return StackSettings(run_dir=stack.run_dir).environment()["TWINSTACK_WEB_ROOT"]


@pytest.mark.skipif(os.geteuid() != 0, reason="nginx keeps the caller's user when not started as root")
def test_nginx_workers_do_not_run_as_root(deployed: Stack):
    master = int((deployed.run_dir / "nginx" / "nginx.pid").read_text())
    children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    assert children
    for pid in children:
        uid = int(re.search(r"^Uid:\s+(\d+)", Path(f"/proc/{pid}/status").read_text(), re.M).group(1))
        assert uid != 0, pid


def test_responses_do_not_name_the_machine(deployed: Stack):
    host = socket.gethostname()
    with deployed.client() as client:
        for path in ("/async/health", "/sync/health", "/async/inspect", "/sync/inspect", "/async/io?delay_ms=0"):
            r = client.get(path)
            assert host not in r.text and host not in str(r.headers), path
            assert r.json()["served_by"].isdigit(), path  # the pid: enough to count workers


# --- 5 and 6. WebSockets and greedy clients ------------------------------------------------------


def ws_url(stack: Stack) -> str:
    return stack.base_url.replace("http", "ws") + "/async/ws/echo"


def test_an_oversized_websocket_message_is_refused_by_the_server(deployed: Stack):
    for size in (64 * 1024 + 1, 1024 * 1024):
        with connect(ws_url(deployed), open_timeout=10, max_size=None) as ws:
            ws.send("x" * 1000)
            assert ws.recv(timeout=10) == "x" * 1000
            ws.send("x" * size)
            with pytest.raises(ConnectionClosed) as exc:
                ws.recv(timeout=10)
            # 1009 from the server; a client still sending a large message may see the TCP
            # connection end first (1006). Either way the message was never taken in.
            assert ws.close_code in (1009, 1006), (size, exc.value)


def test_the_server_refuses_an_oversized_websocket_frame_by_its_header(deployed: Stack):
    """Only a frame's header (declaring 1 MiB) and a few bytes are sent. A server that checks
    the size while reading closes at once with 1009; one that takes in the whole message
    before anything checks it (the app's check) would still be waiting for the payload."""
    port = int(deployed.env["TWINSTACK_HTTP_PORT"])
    key = base64.b64encode(os.urandom(16)).decode()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(
            f"GET /async/ws/echo HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        data = b""
        while b"\r\n\r\n" not in data:
            data += sock.recv(4096)
        head, _, data = data.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101"), head
        # FIN + text; masked, 64-bit length: 1 MiB; a mask key; 10 bytes of the payload.
        sock.sendall(bytes([0x81, 0x80 | 127]) + (1024 * 1024).to_bytes(8, "big") + os.urandom(4) + b"x" * 10)
        while len(data) < 4 and (chunk := sock.recv(4096)):  # socket timeout: 10 s
            data += chunk
    assert data[0] == 0x88 and int.from_bytes(data[2:4], "big") == 1009, data[:16]


def test_websocket_compression_is_not_offered(deployed: Stack):
    """permessage-deflate would let a few KiB on the wire inflate to the message cap."""
    with connect(ws_url(deployed), open_timeout=10, compression="deflate") as ws:
        assert ws.protocol.extensions == []


def test_one_client_holds_a_bounded_number_of_websockets_and_others_still_connect(deployed: Stack):
    with ExitStack() as opened:
        held = [opened.enter_context(connect(ws_url(deployed), open_timeout=10)) for _ in range(WS_PER_CLIENT)]
        for _ in range(3):  # more from the same address: refused at the handshake
            with pytest.raises(InvalidStatus) as exc:
                connect(ws_url(deployed), open_timeout=10)
            assert exc.value.response.status_code == 503
        with connect(ws_url(deployed), open_timeout=10, source_address=("127.0.0.2", 0)) as other:
            other.send("still served")
            assert other.recv(timeout=10) == "still served"
        for ws in held:  # the held ones still work
            ws.send("ok")
            assert ws.recv(timeout=10) == "ok"


@contextmanager
def greedy(stack: Stack, address: str, paths: list[str], allowed: int) -> Iterator[tuple[httpx.Client, list[Future]]]:
    """From ``address``, every path at once; yields once nginx has answered all but ``allowed``
    of them (it refuses what one client may not hold at once), so the ones it let in are what
    the pool is busy with. The client and the requests' futures, to read the answers."""
    with (
        client_from(stack, address, limits=httpx.Limits(max_connections=len(paths))) as client,
        ThreadPoolExecutor(len(paths)) as pool,
    ):
        slow = [pool.submit(client.get, path) for path in paths]
        deadline = time.monotonic() + 10
        while sum(f.done() for f in slow) < len(slow) - allowed:
            assert time.monotonic() < deadline, "nginx did not refuse the greedy client's extra requests"
            time.sleep(0.01)
        yield client, slow


def check_shares(answers: list[httpx.Response], allowed: int) -> None:
    """Exactly ``allowed`` served, the rest refused with 503 JSON."""
    statuses = Counter(a.status_code for a in answers)
    assert statuses == {200: allowed, 503: len(answers) - allowed}, statuses
    assert all(a.json()["error"]["status"] == 503 for a in answers if a.status_code == 503)


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


def test_a_greedy_client_cannot_take_every_database_connection_of_the_async_pool(deployed: Stack):
    """Each /async/db or /async/orders request holds a pooled connection; one address may hold
    ASYNC_DB_PER_CLIENT at once, however it spells the path, and gets 503 JSON at once beyond;
    another is served from the connections left while the greedy ones are still held."""
    variants = ("/async/db", "/async//db", "/async/%64b", "/async/./db")
    paths = [f"{variants[i % len(variants)]}?delay_ms=3000" for i in range(ASYNC_DB_PER_CLIENT + 6)]
    with (
        client_from(deployed, "127.0.0.21") as other,
        greedy(deployed, "127.0.0.20", paths, ASYNC_DB_PER_CLIENT) as (client, slow),
    ):
        assert other.get("/async/db?delay_ms=10").status_code == 200
        assert other.get(f"/async/orders/{'0' * 8}-0000-0000-0000-{'0' * 12}").status_code == 404
        assert not all(f.done() for f in slow), "the other client was answered only after the greedy one"
        check_shares([f.result() for f in slow], ASYNC_DB_PER_CLIENT)
        # The cheap paths of the same half are not counted against it.
        assert client.get("/async/health").status_code == 200


def test_one_client_holds_a_bounded_number_of_requests_in_progress(deployed: Stack):
    """Past CLIENT_MAX_CONNS requests in progress from one address, on any path, nginx answers
    503 JSON at once; another address is served meanwhile."""
    paths = ["/async/io?delay_ms=3000"] * (CLIENT_MAX_CONNS + 4)
    with (
        client_from(deployed, "127.0.0.31") as other,
        greedy(deployed, "127.0.0.30", paths, CLIENT_MAX_CONNS) as (_, slow),
    ):
        assert other.get("/async/io?delay_ms=10").status_code == 200
        check_shares([f.result() for f in slow], CLIENT_MAX_CONNS)


# Each half's expensive paths share one budget per client address (its own zone, in
# nginx/templates/<half>.conf.template): on /sync/ every path holds a worker.
EXPENSIVE = {
    "async": (
        "/async/cpu?work=1",
        "/async/fanout?calls=1&delay_ms=0",
        "/async/jobs/" + "0" * 32,
        "/async/db?delay_ms=0",
        "/async/orders?limit=1",
    ),
    "sync": ("/sync/health", "/sync/cpu?work=1"),
}


@pytest.mark.parametrize("half", list(EXPENSIVE))
def test_expensive_paths_have_a_stricter_rate_per_client(deployed: Stack, half: str):
    paths = EXPENSIVE[half]
    greedy_ip, other_ip = ("127.0.0.4", "127.0.0.5") if half == "async" else ("127.0.0.6", "127.0.0.7")
    with client_from(deployed, greedy_ip) as greedy, client_from(deployed, other_ip) as other:
        statuses = {path: Counter() for path in paths}
        for i in range(36):
            path = paths[i % len(paths)]
            statuses[path][greedy.get(path).status_code] += 1
        # One budget for all of them (20 at once, then 2 a second): the first ones pass.
        assert sum(c[429] for c in statuses.values()) >= 10, statuses
        assert all(c[429] and (c[200] or c[404]) for c in statuses.values()), statuses
        assert all(set(c) <= {200, 404, 429} for c in statuses.values()), statuses
        for path in paths:
            assert other.get(path).status_code in (200, 404), path  # another client is not affected
        if half == "async":
            assert greedy.get("/async/health").status_code == 200  # cheap paths keep the generous limit


# --- 2 and 3. Jobs: bounded, never blocking, never stuck ---------------------------------------


@pytest.mark.parametrize(("prefix", "address"), [("/async", "127.0.0.6"), ("/sync", "127.0.0.9")])
def test_a_full_job_queue_answers_503_at_once(deployed: Stack, prefix: str, address: str):
    with client_from(deployed, address) as client:
        statuses, accepted = Counter(), []
        room = WORKERS[prefix] * JOB_CAPACITY  # what the pool's workers can hold
        for _ in range(room + 4):
            r = client.post(f"{prefix}/jobs", json={"delay_ms": 2000})
            statuses[r.status_code] += 1
            if r.status_code == 503:
                assert r.json()["error"]["code"] == "jobs_busy"
            else:
                accepted.append(r.json()["job_id"])
        assert statuses[202] <= room and statuses[503] >= 4, statuses
        # The pool still serves: jobs run on threads of their own.
        assert client.get(f"{prefix}/health").status_code == 200
        for job_id in accepted:  # leave the queues empty for the next test
            wait_job(client, f"{prefix}/jobs/{job_id}", ("done",))


def wait_job(client: httpx.Client, url: str, done: tuple[str, ...], timeout_s: float = 20) -> dict:
    """Poll a job (at the expensive paths' rate: /jobs is one) until its status is in ``done``."""
    deadline = time.monotonic() + timeout_s
    while True:
        r = client.get(url)
        if r.status_code == 200 and (job := r.json())["status"] in done:
            return job
        assert r.status_code in (200, 429) and time.monotonic() < deadline, r.text
        time.sleep(0.5)


def test_a_job_whose_worker_is_killed_is_reported_failed(deployed: Stack):
    with client_from(deployed, "127.0.0.7") as client:
        job = client.post("/async/jobs", json={"delay_ms": 20_000}).json()
        url = f"/async/jobs/{job['job_id']}"
        wait_job(client, url, ("running",))
        os.kill(int(job["served_by"]), signal.SIGKILL)
        lost = wait_job(client, url, ("failed",))
        assert lost["error"].startswith("lost")


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


@pytest.mark.parametrize("prefix", ["/async", "/sync"])
@pytest.mark.parametrize("length", [4200, 8000, 9000])
def test_a_long_request_line_gets_json_from_nginx_or_the_pool_never_html(deployed: Stack, prefix: str, length: int):
    """Found by the fuzz: a 4 KiB request line passed nginx (8k buffers) and met gunicorn's
    default limit (4094) and its HTML page. Every length now gets the JSON shape."""
    path = f"{prefix}/io?delay_ms=1&pad=" + "x" * length
    with client_from(deployed, "127.0.0.12") as client:
        r = client.get(path)
    assert r.headers["content-type"] == "application/json", (r.status_code, r.text[:200])
    assert r.status_code in (200, 414), r.status_code
