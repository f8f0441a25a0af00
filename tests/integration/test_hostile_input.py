"""Hostile input through nginx, byte for byte (raw sockets: an HTTP client would tidy the
request up). Every answer is a 4xx with the JSON error shape, never a 500, a hang, a file
outside the web root, or a second smuggled request."""

from __future__ import annotations

import json
import socket
import threading
import time

import httpx
import pytest

from tests.support import HALVES, PREFIXES
from twinstack_contract.limits import MAX_BODY_BYTES

pytestmark = pytest.mark.integration

HOST = b"Host: 127.0.0.1\r\nConnection: close\r\n"
# What nginx refuses itself, whichever half the path names: a path of one this project has.
ANY = PREFIXES[0].encode()


def raw(stack, data: bytes, timeout: float = 5.0, port_variable: str = "TWINSTACK_HTTP_PORT") -> bytes:
    port = int(stack.env[port_variable])
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        out = b""
        while chunk := sock.recv(65536):
            out += chunk
    return out


def parse(response: bytes) -> tuple[int, dict]:
    head, _, body = response.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, json.loads(body)


CASES = {
    "uri too long": (b"GET " + ANY + b"/io?delay_ms=" + b"9" * 9000 + b" HTTP/1.1\r\n" + HOST + b"\r\n", 414),
    "dot-dot in /static/": (b"GET /static/../../../../etc/passwd HTTP/1.1\r\n" + HOST + b"\r\n", 400),
    "encoded dot-dot": (b"GET /static/%2e%2e/%2e%2e/%2e%2e/etc/passwd HTTP/1.1\r\n" + HOST + b"\r\n", 400),
    "encoded slash": (b"GET /static/..%2f..%2f..%2fetc%2fpasswd HTTP/1.1\r\n" + HOST + b"\r\n", 400),
    "config outside the root": (b"GET /static/../nginx.conf HTTP/1.1\r\n" + HOST + b"\r\n", 404),
    "NUL in a header": (b"GET " + ANY + b"/health HTTP/1.1\r\n" + HOST + b"X-Bad: a\x00b\r\n\r\n", 400),
    "header too large": (b"GET " + ANY + b"/health HTTP/1.1\r\n" + HOST + b"X-Big: " + b"a" * 20000 + b"\r\n\r\n", 400),
    "garbage method": (b"G\x01T / HTTP/1.1\r\n" + HOST + b"\r\n", 400),
}


def pool_cases(prefix: str) -> dict[str, tuple[bytes, int]]:
    """What a pool answers itself: the same on both halves (one contract)."""
    half = prefix.encode()
    orders = b"POST " + half + b"/orders HTTP/1.1\r\n" + HOST
    return {
        f"huge query value {prefix}": (
            b"GET " + half + b"/io?delay_ms=" + b"9" * 3000 + b" HTTP/1.1\r\n" + HOST + b"\r\n",
            422,
        ),
        f"wrong content type {prefix}": (orders + b"Content-Type: text/xml\r\nContent-Length: 7\r\n\r\n<a></a>", 415),
        f"deep JSON nesting {prefix}": (
            orders + b"Content-Type: application/json\r\nContent-Length: 20000\r\n\r\n" + b"[" * 10000 + b"]" * 10000,
            400,
        ),
    }


for prefix in PREFIXES:  # each half present
    CASES |= pool_cases(prefix)


@pytest.mark.parametrize("name", list(CASES))
def test_hostile_request_gets_a_json_4xx(stack, name):
    data, expected = CASES[name]
    response = raw(stack, data)
    assert response.count(b"HTTP/1.1 ") == 1
    status, body = parse(response)
    assert status == expected, body
    assert set(body["error"]) == {"status", "code", "message", "details", "request_id"}
    assert b"root:" not in response  # no /etc/passwd, ever


@pytest.mark.parametrize("prefix", PREFIXES)
def test_request_smuggling_is_refused(stack, prefix: str):
    """Content-Length and Transfer-Encoding together: nginx refuses the request outright, so the
    request hidden in the body is never run as a second one."""
    smuggled = b"GET " + prefix.encode() + b"/inspect HTTP/1.1\r\nHost: x\r\n\r\n"
    data = (
        b"POST " + prefix.encode() + b"/orders HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggled
    )
    response = raw(stack, data)
    assert response.count(b"HTTP/1.1 ") == 1
    status, body = parse(response)
    assert status == 400 and body["error"]["code"] == "bad_request"


def test_error_pages_are_not_public(client):
    assert client.get("/_error/500").status_code == 404


def test_slow_headers_are_cut_off_while_others_are_served(stack):
    """Slowloris: a client that sends its header a byte at a time is disconnected by nginx's
    client_header_timeout (10 s), and meanwhile other clients are served normally."""
    port = int(stack.env["TWINSTACK_HTTP_PORT"])
    closed_after: list[float] = []

    def slow_client() -> None:
        """Records when nginx closed the connection; nothing if it never did (in 30 s)."""
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            sock.sendall(b"GET " + ANY + b"/health HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            start = time.monotonic()
            try:
                for _ in range(30):  # bounded even if nginx never closed
                    sock.sendall(b"X")
                    time.sleep(1)
                    sock.settimeout(0.01)
                    try:
                        if sock.recv(1024) == b"":
                            closed_after.append(time.monotonic() - start)
                            return
                    except TimeoutError:
                        pass
                    sock.settimeout(30)
            except OSError:  # reset by nginx: closed
                closed_after.append(time.monotonic() - start)

    slow = threading.Thread(target=slow_client)
    slow.start()
    with httpx.Client(base_url=stack.base_url, timeout=5) as client:
        served = [client.get(f"{PREFIXES[0]}/health").status_code for _ in range(5)]
    slow.join()
    assert served == [200] * 5
    # Closed by nginx, and not before its timeout: a byte a second does not keep it open.
    assert closed_after and closed_after[0] >= 8, closed_after


@pytest.mark.parametrize("prefix", PREFIXES)
@pytest.mark.parametrize("host", [b"evil.example.net", b"127.0.0.1.nip.io", b""])
def test_unknown_host_is_refused_with_421_json(stack, host, prefix: str):
    request = b"GET " + prefix.encode() + b"/inspect HTTP/1.1\r\nHost: " + host + b"\r\nConnection: close\r\n\r\n"
    response = raw(stack, request)
    status, body = parse(response)
    if host:
        assert status == 421 and body["error"]["code"] == "misdirected_request"
    else:
        assert status == 400  # HTTP/1.1 requires a Host
    assert b"framework" not in response  # never reached a service


def test_known_hosts_are_served(client):
    for host in ("localhost", "127.0.0.1"):
        for prefix in PREFIXES:
            assert client.get(f"{prefix}/health", headers={"Host": host}).status_code == 200


@pytest.mark.parametrize("port_variable", [f"TWINSTACK_{half.prefix.upper()}_PORT" for half in HALVES])
def test_a_chunked_body_over_the_limit_sent_straight_to_a_pool_gets_413_json(stack, port_variable: str):
    """nginx refuses it first in a deployment; a pool reached by another way (a sidecar, a
    port-forward) refuses it too, counting a chunked body as it arrives: no length is declared."""
    chunk = b"x" * 8192
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(MAX_BODY_BYTES // len(chunk) + 2))
    request = (
        b"POST /orders HTTP/1.1\r\n" + HOST + b"Content-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n" + chunks + b"0\r\n\r\n"
    )
    try:
        response = raw(stack, request, timeout=30, port_variable=port_variable)
    except ConnectionResetError:  # refused before the whole body was read: nothing to parse
        pytest.fail("the pool reset the connection instead of answering 413")
    status, body = parse(response)
    assert status == 413 and body["error"]["status"] == 413, response[:300]
