"""What one hostile or greedy client on the public port can do, tried through the real stack
with the deployment's defaults (no lab routes), each class of attack in several variants.

Clients other than 127.0.0.1 are other loopback addresses (127.0.0.0/8 is all loopback on
Linux): nginx keys its per-client limits on the TCP peer, so they count as other clients.

What only one half has (the lab's routes, the WebSocket, the async pool's database share, the
sync pool's workers) is tried in that half's files, on a stack of this fixture:
async_half/test_hardening_async.py and sync_half/test_hardening_sync.py.
"""

from __future__ import annotations

import os
import re
import socket
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.integration.conftest import Stack, running_stack
from tests.support import HALVES, PREFIXES, ROOT

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
    """A stack as deployed, with small per-client limits to reach quickly."""
    with running_stack(
        tmp_path_factory.mktemp("hardening"),
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


# --- 4. Methods: a closed set at the edge and in the metrics -----------------------------------


@pytest.mark.parametrize("prefix", [*(f"{prefix}/health" for prefix in PREFIXES), "/static/style.css", "/"])
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
    for pool, port in ((half.prefix, deployed.env[f"TWINSTACK_{half.prefix.upper()}_PORT"]) for half in HALVES):
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
        line % prefix.encode()
        for prefix in PREFIXES
        for line in (
            b"GET http://localhost%s/health/ HTTP/1.1\r\nHost: evil.example\r\n",
            b"GET http://127.0.0.1%s/health/ HTTP/1.1\r\nHost: evil.example:8080\r\n",
            b"GET http://localhost%s/inspect HTTP/1.1\r\nHost: evil.example\r\nX-Forwarded-Host: evil.example\r\n",
            b"GET http://localhost%s/inspect HTTP/1.1\r\nHost: evil.example\r\n",
            b"GET http://LOCALHOST%s/inspect HTTP/1.1\r\nHost: localhost.evil.example\r\n",
        )
    ],
)
def test_a_forged_host_never_reaches_a_pool(deployed: Stack, request_line: bytes):
    answer = raw(deployed, request_line + b"Connection: close\r\n\r\n")
    assert b"evil" not in answer, answer.decode(errors="replace")
    assert answer.startswith((b"HTTP/1.1 200", b"HTTP/1.1 307", b"HTTP/1.1 404")), answer[:200]


def test_the_clients_own_host_and_port_are_kept(deployed: Stack):
    port = deployed.env["TWINSTACK_HTTP_PORT"]
    with deployed.client() as client:
        for prefix in PREFIXES:
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
        paths = [f"{prefix}{path}" for prefix in PREFIXES for path in ("/health", "/inspect", "/io?delay_ms=0")]
        for path in paths:
            r = client.get(path)
            assert host not in r.text and host not in str(r.headers), path
            assert r.json()["served_by"].isdigit(), path  # the pid: enough to count workers


# --- 5 and 6. Greedy clients (each half's own pool: in its files) --------------------------------


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


@pytest.mark.parametrize("half", [half.prefix for half in HALVES])
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

JOB_CLIENTS = {"/async": "127.0.0.6", "/sync": "127.0.0.9"}  # the address each half's queue is filled from


@pytest.mark.parametrize(("prefix", "address"), [(p, JOB_CLIENTS[p]) for p in PREFIXES])
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


@pytest.mark.parametrize("prefix", PREFIXES)
@pytest.mark.parametrize("length", [4200, 8000, 9000])
def test_a_long_request_line_gets_json_from_nginx_or_the_pool_never_html(deployed: Stack, prefix: str, length: int):
    """Found by the fuzz: a 4 KiB request line passed nginx (8k buffers) and met gunicorn's
    default limit (4094) and its HTML page. Every length now gets the JSON shape."""
    path = f"{prefix}/io?delay_ms=1&pad=" + "x" * length
    with client_from(deployed, "127.0.0.12") as client:
        r = client.get(path)
    assert r.headers["content-type"] == "application/json", (r.status_code, r.text[:200])
    assert r.status_code in (200, 414), r.status_code
