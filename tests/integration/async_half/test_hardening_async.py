"""What one hostile or greedy client can do to the async half only: the lab's routes, its
WebSocket, its pool's database connections, its jobs. On a stack as deployed, the fixture of
tests/integration/test_hardening.py (its docstring says how other clients are made)."""

from __future__ import annotations

import base64
import os
import signal
import socket
import time
from contextlib import ExitStack

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from tests.integration import test_hardening as hardening
from tests.integration.conftest import Stack
from tests.integration.test_hardening import (
    ASYNC_DB_PER_CLIENT,
    CLIENT_MAX_CONNS,
    WS_PER_CLIENT,
    check_shares,
    client_from,
    greedy,
    wait_job,
)

pytestmark = pytest.mark.integration

# The stack as deployed, with its small per-client limits: one of this module's own.
deployed = hardening.deployed


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


# --- 3. Jobs: never stuck ----------------------------------------------------------------------


def test_a_job_whose_worker_is_killed_is_reported_failed(deployed: Stack):
    with client_from(deployed, "127.0.0.7") as client:
        job = client.post("/async/jobs", json={"delay_ms": 20_000}).json()
        url = f"/async/jobs/{job['job_id']}"
        wait_job(client, url, ("running",))
        os.kill(int(job["served_by"]), signal.SIGKILL)
        lost = wait_job(client, url, ("failed",))
        assert lost["error"].startswith("lost")
