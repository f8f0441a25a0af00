"""HTTPS at nginx, natively: the suite's stack serves it beside plain HTTP (conftest.tls_settings),
from the same routes. HTTP/2 on every route, WebSockets and streaming over TLS, the Host
allowlist and the security headers as on plain HTTP, HSTS on every answer, the redirect from the
plain port, and the policy as testssl.sh sees it."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from native.certificates import make_certificate
from native.settings import deployed
from tests.integration.conftest import Stack, tls_settings
from tests.integration.load import PREFIXES, SteadyLoad
from tests.integration.test_through_nginx import ORDER
from tests.support import ROOT, free_port, require_binary

pytestmark = pytest.mark.integration

# A pool's route where any will do: the first half this project has.
API = PREFIXES[0]

SECURITY_HEADERS = ("x-content-type-options", "x-frame-options", "referrer-policy", "x-request-id")
HSTS = "max-age=31536000"


def trusting(stack: Stack) -> ssl.SSLContext:
    """A client context that trusts the stack's certificate, and only it."""
    return ssl.create_default_context(cafile=stack.certificate)


def curl(stack: Stack, path: str, *args: str, host: str = "localhost") -> tuple[str, int, dict[str, str], str]:
    """One request with curl --http2 (ALPN), verifying the certificate; returns the HTTP
    version, the status, the headers (lower-case names) and the body."""
    port = stack.env["TWINSTACK_TLS_PORT"]
    result = subprocess.run(
        ["curl", "-sS", "--http2", "--cacert", stack.certificate, "--max-time", "20", "-D", "-",
         "-w", "\n%{http_version} %{http_code}", "--resolve", f"{host}:{port}:127.0.0.1", *args,
         f"https://{host}:{port}{path}"],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    head, _, rest = result.stdout.partition("\n\n")  # text mode: curl's CRLFs read as \n
    body, _, trailer = rest.rpartition("\n")
    version, status = trailer.split()
    headers = {}
    for line in head.splitlines()[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return version, int(status), headers, body


def api_routes() -> list[tuple[str, str]]:
    """Every GET route of each deployed half without a path parameter, as (half, path), from
    the apps themselves (FastAPI's OpenAPI paths, Flask's url_map), plus the docs FastAPI serves."""
    found = []
    for half in deployed():
        if half.package == "fastapi_service":
            from fastapi_service.main import create_app as fastapi_app

            schema = fastapi_app().openapi()["paths"]
            paths = [p for p, ops in schema.items() if "get" in ops] + ["/docs", "/redoc", "/openapi.json"]
        else:
            from flask_service.main import create_app as flask_app

            paths = [r.rule for r in flask_app().url_map.iter_rules() if "GET" in r.methods]
        found += [(half.prefix, p) for p in paths if "{" not in p and "<" not in p and p != "/metrics"]
    return sorted(found)


# --- started first, checked later -----------------------------------------------------------

# testssl.sh's checks that rate a severity, in two halves run side by side (a full run takes
# half a minute): every check of its default run but the client simulations, which only report
# which clients connect (INFO).
TESTSSL_OPTIONS = ("--quiet", "--color", "0", "--warnings", "batch", "--ip", "127.0.0.1",
                   "--connect-timeout", "10", "--openssl-timeout", "10")  # fmt: skip
TESTSSL_CHECKS = (("-U",), ("-p", "-s", "-f", "-P", "-S", "-h"))
# Handshakes opened and stalled: two silent, two cut short after a ClientHello's first bytes.
STALLED = (b"", b"", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", b"\x16\x03\x01\x02\x00\x01")


@dataclass
class Background:
    """What runs beside this module's tests, against the suite's stack: testssl.sh (read by
    test_testssl_...), and stalled TLS handshakes, each watched by a thread that notes when nginx
    closed it (read by test_a_stalled_handshake_...); meanwhile every other test is served."""

    started: float
    scans: list[tuple[subprocess.Popen, Path, tuple[str, ...]]] = field(default_factory=list)
    sockets: list[socket.socket] = field(default_factory=list)
    closed_after: dict[int, float] = field(default_factory=dict)
    watchers: list[threading.Thread] = field(default_factory=list)

    def watch(self, index: int, sock: socket.socket) -> None:
        """Notes when nginx closed the connection (end of stream, or a reset); nothing when the
        socket's own timeout (60 s) ended the wait."""
        try:
            while sock.recv(4096):
                pass
        except TimeoutError:
            return
        except OSError:
            pass
        self.closed_after[index] = time.monotonic() - self.started


@pytest.fixture(scope="module", autouse=True)
def background(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Background]:
    folder = tmp_path_factory.mktemp("tls-background")
    port = int(stack.env["TWINSTACK_TLS_PORT"])
    running = Background(started=time.monotonic())
    binary = require_binary(shutil.which("testssl") or shutil.which("testssl.sh"), "testssl.sh")
    for n, checks in enumerate(TESTSSL_CHECKS):
        jsonfile = folder / f"testssl-{n}.json"
        scan = subprocess.Popen(
            [binary, *TESTSSL_OPTIONS, "--jsonfile", str(jsonfile), *checks, f"localhost:{port}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        running.scans.append((scan, jsonfile, checks))
    for n, first_bytes in enumerate(STALLED):
        sock = socket.create_connection(("127.0.0.1", port), timeout=60)
        if first_bytes:
            sock.sendall(first_bytes)
        running.sockets.append(sock)
        watcher = threading.Thread(target=running.watch, args=(n, sock), daemon=True)
        watcher.start()
        running.watchers.append(watcher)
    try:
        yield running
    finally:
        for scan, _, _ in running.scans:
            if scan.poll() is None:
                scan.kill()
            scan.wait()
        for sock in running.sockets:
            sock.close()


# --- HTTP/2 ---------------------------------------------------------------------------------


def test_every_route_answers_over_http2(stack: Stack):
    """ALPN picks h2 for every route: nginx's own (the page, assets, errors, /locust), each
    pool's GET routes, a POST and the order it made."""
    nginx_paths = ["/", "/static/style.css", "/static/app.js", "/favicon.ico", "/locust", "/no-such-page"]
    for path in nginx_paths + [f"/{half}{path}" for half, path in api_routes()]:
        version, status, headers, _ = curl(stack, path)
        assert version == "2", path
        assert status < 500, (path, status)
        assert headers["strict-transport-security"] == HSTS, path
    for half in deployed():
        version, status, _, body = curl(
            stack, f"/{half.prefix}/orders", "-H", "Content-Type: application/json",
            "--data", json.dumps(ORDER),
        )  # fmt: skip
        assert (version, status) == ("2", 201), body
        order = json.loads(body)
        version, status, _, body = curl(stack, f"/{half.prefix}/orders/{order['order_id']}")
        assert (version, status) == ("2", 200) and json.loads(body)["order_id"] == order["order_id"]


def test_http2_streams_a_response_as_it_is_made(stack: Stack):
    for half in deployed():
        started = time.monotonic()
        result = subprocess.run(
            ["curl", "-sS", "-N", "--http2", "--cacert", stack.certificate, "--max-time", "20",
             "-w", "%{http_version} %{time_starttransfer}",
             f"{stack.https_url}/{half.prefix}/stream?chunks=3&interval_ms=400"],
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        total = time.monotonic() - started
        lines = [json.loads(x) for x in result.stdout.splitlines()[:-1] if x]
        version, first_byte = result.stdout.splitlines()[-1].rsplit("}", 1)[-1].split()
        assert [chunk["chunk"] for chunk in lines] == [1, 2, 3]
        assert version == "2"
        # Buffered, the first byte would come with the last chunk (~0.8 s after the first).
        assert total - float(first_byte) >= 0.5, (total, first_byte)


def test_streaming_over_https_arrives_in_chunks(stack: Stack):
    arrivals = []
    url = f"{stack.https_url}{API}/stream?chunks=3&interval_ms=400"
    with httpx.stream("GET", url, timeout=10, verify=trusting(stack)) as r:
        for line in r.iter_lines():
            if line:
                arrivals.append(time.monotonic())
    assert len(arrivals) == 3
    assert arrivals[-1] - arrivals[0] >= 0.5


# --- the same site, the same headers ------------------------------------------------------


# One of each kind of answer: nginx's files, a pool's JSON, and every error nginx makes itself.
ANSWERS = [
    ("page", "GET", "/", {}, None),
    ("asset", "GET", "/static/style.css", {}, None),
    *((f"api {prefix}", "GET", f"{prefix}/health", {}, None) for prefix in PREFIXES),
    ("404 nginx", "GET", "/no-such-page", {}, None),
    ("404 pool", "GET", f"{API}/no-such-route", {}, None),
    ("404 metrics", "GET", f"{API}/metrics", {}, None),
    ("405 static", "POST", "/static/style.css", {}, b"x"),
    ("413", "POST", f"{API}/orders", {"content-type": "application/json"}, b"x" * 70_000),
    ("501", "PROPFIND", "/", {}, None),
    (
        "preflight",
        "OPTIONS",
        f"{API}/io",
        {"origin": "https://app.example.test", "access-control-request-method": "GET"},
        None,
    ),
    ("422 pool", "GET", f"{API}/io?delay_ms=abc", {}, None),
]


@pytest.mark.parametrize(("kind", "method", "path", "headers", "body"), ANSWERS, ids=[a[0] for a in ANSWERS])
def test_https_answers_as_plain_http_does_with_hsts(stack: Stack, kind, method, path, headers, body):
    """Status, body shape and security headers equal to plain HTTP's for the same request;
    Strict-Transport-Security on every HTTPS answer (errors included), never on plain HTTP."""
    with stack.client() as plain, httpx.Client(base_url=stack.https_url, verify=trusting(stack), timeout=30) as tls:
        answers = [c.request(method, path, headers=headers, content=body) for c in (plain, tls)]
    (p, s) = answers
    assert s.status_code == p.status_code, kind
    assert s.headers.get("content-type") == p.headers.get("content-type"), kind
    for name in (*SECURITY_HEADERS, "content-security-policy", "cache-control", "access-control-allow-origin"):
        if name == "x-request-id":
            assert (name in s.headers) == (name in p.headers), (kind, name)
        else:
            assert s.headers.get(name) == p.headers.get(name), (kind, name)
    assert s.headers.get("strict-transport-security") == HSTS, kind
    assert "strict-transport-security" not in p.headers, kind
    if s.status_code >= 400 and s.headers.get("content-type", "").startswith("application/json"):
        assert s.json()["error"]["status"] == s.status_code, kind


def test_only_static_files_are_compressed_over_https(stack: Stack):
    """BREACH: over HTTPS nothing that may reflect a client's input beside a secret is
    compressed (the page, the API, errors); the fixed static files still are. Plain HTTP
    compresses as before."""
    gzip = {"accept-encoding": "gzip"}
    with stack.client() as plain, httpx.Client(base_url=stack.https_url, verify=trusting(stack), timeout=30) as tls:
        for path in ("/", *(f"{prefix}/inspect" for prefix in PREFIXES), "/no-such-page"):
            assert "content-encoding" not in tls.get(path, headers=gzip).headers, path
        for path in ("/static/app.js", "/static/style.css"):
            assert tls.get(path, headers=gzip).headers.get("content-encoding") == "gzip", path
        assert plain.get("/", headers=gzip).headers.get("content-encoding") == "gzip"


def test_oversized_headers_get_json_and_hsts_over_https(stack: Stack):
    with httpx.Client(base_url=stack.https_url, verify=trusting(stack), timeout=30) as tls:
        r = tls.get("/", headers={"x-big": "a" * 20_000})
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "header_too_large"
    assert r.headers["strict-transport-security"] == HSTS


def test_pools_see_https(stack: Stack):
    """nginx ends TLS and tells the pools (X-Forwarded-Proto), so their URLs are https ones."""
    with httpx.Client(base_url=stack.https_url, verify=trusting(stack), timeout=30) as tls:
        for half in deployed():
            assert tls.get(f"/{half.prefix}/inspect").json()["scheme"] == "https", half


# --- the Host allowlist over HTTPS ----------------------------------------------------------


def raw_tls(stack: Stack, request: bytes, server_name: str | None) -> bytes:
    """Send bytes over TLS with the given SNI (None: no SNI, as a client connecting to an IP
    address sends); HTTP/1.1, the connection closed after the answer."""
    context = ssl.create_default_context(cafile=stack.certificate)
    context.check_hostname = False  # the SNI under test may name a host the certificate does not
    port = int(stack.env["TWINSTACK_TLS_PORT"])
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname=server_name) as tls,
    ):
        tls.sendall(request)
        chunks = []
        while chunk := tls.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


FOREIGN_HOST_REQUESTS = [
    ("foreign Host, our SNI", b"GET / HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n", "localhost"),
    ("foreign Host and SNI", b"GET / HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n", "evil.example"),
    (
        "foreign Host, no SNI",
        f"GET {API}/health HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n".encode(),
        None,
    ),
    (
        "foreign absolute URI",
        b"GET https://evil.example/ HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
        "localhost",
    ),
    ("HTTP/1.0, no Host", b"GET / HTTP/1.0\r\n\r\n", "localhost"),
    (
        "Host with a foreign port name",
        b"GET / HTTP/1.1\r\nHost: localhost.evil.example\r\nConnection: close\r\n\r\n",
        "localhost",
    ),
    ("suffix of a served name", b"GET / HTTP/1.1\r\nHost: xlocalhost\r\nConnection: close\r\n\r\n", "localhost"),
    # Our Host on a connection opened for another name (domain fronting): 421 all the same.
    (
        "our Host, foreign SNI",
        f"GET {API}/health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".encode(),
        "evil.example",
    ),
    ("our IP as Host, foreign SNI", b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n", "evil.example"),
]


@pytest.mark.parametrize(
    ("request_bytes", "server_name"),
    [r[1:] for r in FOREIGN_HOST_REQUESTS],
    ids=[r[0] for r in FOREIGN_HOST_REQUESTS],
)
def test_a_name_not_served_gets_421_json_over_https(stack: Stack, request_bytes: bytes, server_name):
    answer = raw_tls(stack, request_bytes, server_name)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 421 "), answer[:200]
    assert json.loads(body)["error"]["code"] == "misdirected_request"
    assert b"\r\nStrict-Transport-Security: max-age=31536000" in head


# (what curl is told, besides the URL's name and the port): over HTTP/2, the name of the TLS
# connection (SNI, the URL's host) and the :authority (the URL's, or a Host header's) differ.
AUTHORITIES = {
    "foreign SNI and authority": ("evil.example", "/", ()),
    "our authority, foreign SNI": ("evil.example", f"{API}/health", ("-H", "Host: localhost:{port}")),
    "our SNI, foreign authority": ("localhost", f"{API}/health", ("-H", "Host: evil.example:{port}")),
}


@pytest.mark.parametrize("case", AUTHORITIES)
def test_a_foreign_name_over_http2_gets_421(stack: Stack, case: str):
    name, path, extra = AUTHORITIES[case]
    port = stack.env["TWINSTACK_TLS_PORT"]
    result = subprocess.run(
        ["curl", "-sS", "--http2", "-k", "-w", "\n%{http_version} %{http_code}",
         *(arg.format(port=port) for arg in extra), "--resolve", f"{name}:{port}:127.0.0.1",
         f"https://{name}:{port}{path}"],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    body, _, trailer = result.stdout.rpartition("\n")
    assert trailer == "2 421", result.stdout
    assert json.loads(body)["error"]["code"] == "misdirected_request"


@pytest.mark.parametrize(
    ("host", "sni"),
    [("localhost", "localhost"), ("LocalHost", "localhost"), ("localhost", "LOCALHOST"), ("127.0.0.1", None),
     ("localhost", None)],
)  # fmt: skip
def test_every_served_name_is_served_over_https(stack: Stack, host: str, sni: str | None):
    """Names compare case-insensitively; without SNI (a client connecting to an IP address)
    the Host decides."""
    request = f"GET {API}/health HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode()
    assert raw_tls(stack, request, sni).startswith(b"HTTP/1.1 200 ")


@pytest.mark.parametrize(
    "request_bytes",
    [f"GET {API}/health HTTP/1.1\r\nHost: localhost\r\n\r\n".encode(),
     f"POST {PREFIXES[-1]}/orders HTTP/1.1\r\nHost: localhost\r\nContent-Length: 2\r\n\r\n{{}}".encode(),
     b"GET / HTTP/1.1\r\nHost: evil.example\r\n\r\n"],
    ids=["GET", "POST", "foreign Host"],
)  # fmt: skip
def test_plain_http_on_the_https_port_gets_400_json(stack: Stack, request_bytes: bytes):
    with socket.create_connection(("127.0.0.1", int(stack.env["TWINSTACK_TLS_PORT"])), timeout=10) as sock:
        sock.sendall(request_bytes)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 "), answer[:300]
    assert json.loads(body)["error"]["code"] == "https_required"


# --- the policy --------------------------------------------------------------------------


def handshake(stack: Stack, **options) -> ssl.SSLSocket:
    context = trusting(stack)
    for name, value in options.items():
        setattr(context, name, value)
    raw = socket.create_connection(("127.0.0.1", int(stack.env["TWINSTACK_TLS_PORT"])), timeout=10)
    return context.wrap_socket(raw, server_hostname="localhost")


@pytest.mark.parametrize("version", ["TLSv1", "TLSv1_1"])
def test_tls_before_1_2_is_refused(stack: Stack, version: str):
    """Refused by the server (its protocol_version alert), not by this client's own OpenSSL,
    which is told to allow the old versions and ciphers."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(stack.certificate)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # ssl deprecates the old versions: the point
        context.minimum_version = context.maximum_version = getattr(ssl.TLSVersion, version)
    context.set_ciphers("ALL:@SECLEVEL=0")
    raw = socket.create_connection(("127.0.0.1", int(stack.env["TWINSTACK_TLS_PORT"])), timeout=10)
    with (
        pytest.raises(ssl.SSLError, match="ALERT_PROTOCOL_VERSION"),
        context.wrap_socket(raw, server_hostname="localhost"),
    ):
        pass


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
def test_tls_1_2_and_1_3_are_forward_secret(stack: Stack, version):
    with handshake(stack, minimum_version=version, maximum_version=version) as tls:
        name, protocol, _bits = tls.cipher()
        assert protocol == {ssl.TLSVersion.TLSv1_2: "TLSv1.2", ssl.TLSVersion.TLSv1_3: "TLSv1.3"}[version]
        # TLS 1.3 is always (EC)DHE; for 1.2, only ECDHE suites are offered, all AEAD.
        assert protocol == "TLSv1.3" or (name.startswith("ECDHE-") and ("GCM" in name or "CHACHA20" in name)), name


def test_a_client_offering_only_weak_tls_1_2_suites_is_refused(stack: Stack):
    """RSA key exchange (no forward secrecy) and CBC suites, which OpenSSL still offers, are not."""
    context = trusting(stack)
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers("AES128-GCM-SHA256:AES256-SHA:ECDHE-ECDSA-AES128-SHA:ECDHE-RSA-AES256-SHA384")
    raw = socket.create_connection(("127.0.0.1", int(stack.env["TWINSTACK_TLS_PORT"])), timeout=10)
    with pytest.raises(ssl.SSLError), context.wrap_socket(raw, server_hostname="localhost"):
        pass


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3], ids=["TLSv1.2", "TLSv1.3"])
def test_sessions_are_resumed(stack: Stack, version: ssl.TLSVersion):
    """The shared session cache: a second connection resumes the first's session (no full
    handshake), and the resumed connection still answers. TLS 1.3 hands the session over after
    the handshake, so the first connection is used before its session is taken."""
    context = trusting(stack)
    context.minimum_version = context.maximum_version = version
    port = int(stack.env["TWINSTACK_TLS_PORT"])
    request = f"GET {API}/health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".encode()
    with context.wrap_socket(socket.create_connection(("127.0.0.1", port)), server_hostname="localhost") as first:
        first.sendall(request)
        assert first.recv(100).startswith(b"HTTP/1.1 200 ")
        session = first.session
        assert not first.session_reused
    with context.wrap_socket(
        socket.create_connection(("127.0.0.1", port)), server_hostname="localhost", session=session
    ) as second:
        assert second.session_reused and second.version() == version.name.replace("v1_", "v1.")
        second.sendall(request)
        assert second.recv(100).startswith(b"HTTP/1.1 200 ")


# --- testssl.sh -----------------------------------------------------------------------------

# Findings a locally made certificate cannot avoid (snippets/tls.conf says why for each).
CERTIFICATE_FINDINGS = {"cert_chain_of_trust", "cert_revocation", "cert_expirationStatus", "DNS_CAArecord"}
SEVERE = {"MEDIUM", "HIGH", "CRITICAL"}
# testssl.sh rates session resumption only INFO (supported or not), or WARN when its own
# connection failed; test_sessions_are_resumed asserts resumption for each version instead.
RESUMPTION = {"sessionresumption_ticket", "sessionresumption_ID"}


def run_testssl(target: str, *checks: str, jsonfile: Path) -> list[dict]:
    binary = require_binary(shutil.which("testssl") or shutil.which("testssl.sh"), "testssl.sh")
    result = subprocess.run(
        [binary, *TESTSSL_OPTIONS, "--jsonfile", str(jsonfile), *checks, target],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert jsonfile.exists(), result.stdout[-3000:] + result.stderr[-3000:]
    return json.loads(jsonfile.read_text())


def test_testssl_finds_nothing_medium_or_above_but_the_certificates(stack: Stack, background: Background):
    """testssl.sh against the stack's HTTPS port (started with the module: Background): every
    check of its default run that rates a severity (protocols, cipher categories, forward
    secrecy, server preferences, server defaults and the certificate, headers, every
    vulnerability it knows)."""
    findings = []
    for scan, jsonfile, checks in background.scans:
        scan.wait(timeout=300)
        assert jsonfile.exists(), f"testssl.sh {' '.join(checks)} wrote no findings"
        found = json.loads(jsonfile.read_text())
        # testssl.sh's own failures ("check failed because of connect problem", WARN), seen
        # about once in five runs with the whole suite beside it: that part once more, alone.
        if any(f["severity"] == "WARN" and f["finding"].startswith("check failed") for f in found):
            print(f"testssl.sh {' '.join(checks)} failed a check of its own, run again:", found)
            found = run_testssl(
                f"localhost:{stack.env['TWINSTACK_TLS_PORT']}", *checks, jsonfile=jsonfile.with_suffix(".again.json")
            )
        findings += [f for f in found if not (f["id"] in RESUMPTION and f["severity"] == "WARN")]
    ids = {f["id"] for f in findings}
    ran = {"TLS1_2", "TLS1_3", "HSTS_time", "BREACH", "cipher_order", "PFS", "heartbleed", "ROBOT", "ALPN_HTTP2"}
    assert ran <= ids, sorted(ids)
    severe = [f for f in findings if f["severity"] in SEVERE and f["id"] not in CERTIFICATE_FINDINGS]
    assert not severe, json.dumps(severe, indent=1)
    # Every finding that is not OK or INFO (LOW included) is one snippets/tls.conf explains.
    policy = (ROOT / "nginx" / "snippets" / "tls.conf").read_text()
    unexplained = [f for f in findings if f["severity"] not in {"OK", "INFO"} and f["id"] not in policy]
    assert not unexplained, json.dumps(unexplained, indent=1)
    by_id = {f["id"]: f for f in findings}
    assert by_id["TLS1"]["finding"] == "not offered" and by_id["TLS1_1"]["finding"] == "not offered"
    assert by_id["HSTS_time"]["severity"] == "OK" and by_id["ALPN_HTTP2"]["finding"].startswith("h2")


def test_a_stalled_handshake_is_cut_off_while_others_are_served(background: Background):
    """Connections opened to the HTTPS port with a handshake never finished (silent, or a
    ClientHello cut short), held since the module began while every test above was served:
    nginx closed each after client_header_timeout (10 s), as a stalled plain request; nginx
    1.25.5+'s own handshake timeout would have held them 60 s (snippets/tls-nginx-1.25.5.conf)."""
    # Waited for up to 40 s from the start (nginx's 60 s would not be seen), then every
    # connection must have been closed by nginx, and none before its 10 s.
    for watcher in background.watchers:
        watcher.join(timeout=max(1.0, 40 - (time.monotonic() - background.started)))
    assert len(background.closed_after) == len(STALLED), background.closed_after
    assert all(after > 8 for after in background.closed_after.values()), background.closed_after


def listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


@contextmanager
def nginx_alone(
    tmp: Path, redirect: bool = False, snippets: Path | None = None, **settings: str
) -> Iterator[dict[str, str]]:
    """twinstack's nginx without the rest of the stack, rendered by `python -m native
    render-nginx` with HTTPS on (as `make up TLS=1` renders it), in the foreground until the
    block ends; ``snippets`` replaces nginx/snippets, ``settings`` are TWINSTACK_* variables.
    Yields its environment."""
    env = {**tls_settings(tmp, redirect=redirect), "TWINSTACK_HTTP_PORT": str(free_port()),
           "TWINSTACK_NGINX_STATUS_PORT": str(free_port()), "TWINSTACK_RUN_DIR": str(tmp / "run"),
           "TWINSTACK_LOG_DIR": str(tmp / "logs"), **settings}  # fmt: skip
    (tmp / "logs").mkdir()
    result = subprocess.run(
        [sys.executable, "-m", "native", "render-nginx", str(tmp / "nginx")],
        cwd=ROOT, env={**os.environ, **env}, capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    if snippets is not None:
        (tmp / "nginx" / "snippets").unlink()
        (tmp / "nginx" / "snippets").symlink_to(snippets)
    nginx = subprocess.Popen(json.loads(result.stdout)["argv"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 10
        for port in (env["TWINSTACK_HTTP_PORT"], env["TWINSTACK_TLS_PORT"]):
            while not listening(int(port)):
                assert time.monotonic() < deadline and nginx.poll() is None, nginx.stderr.read()
                time.sleep(0.1)
        yield env
    finally:
        nginx.terminate()
        nginx.wait(timeout=10)
        nginx.stderr.close()


def test_testssl_reports_what_the_policy_prevents(tmp_path: Path, nginx_bin: str):
    """The check can fail: the same nginx with the server's cipher order turned off is reported
    HIGH (the run above checks the rest; compression: test_only_static_files_are_compressed_over_https)."""
    snippets = tmp_path / "snippets"
    shutil.copytree(ROOT / "nginx" / "snippets", snippets)
    policy = snippets / "tls.conf"
    policy.write_text(policy.read_text().replace("ssl_prefer_server_ciphers on;", "ssl_prefer_server_ciphers off;"))
    with nginx_alone(tmp_path, snippets=snippets) as env:
        findings = run_testssl(f"localhost:{env['TWINSTACK_TLS_PORT']}", "-P", jsonfile=tmp_path / "weak.json")
    by_id = {f["id"]: f["severity"] for f in findings}
    assert by_id.get("cipher_order") == "HIGH", by_id


# --- the plain port's redirect -----------------------------------------------------------


@pytest.fixture(scope="module")
def redirecting(tmp_path_factory: pytest.TempPathFactory, nginx_bin: str) -> Iterator[dict[str, str]]:
    """The plain port's redirect needs no pool behind it: nginx alone."""
    with nginx_alone(tmp_path_factory.mktemp("redirect"), redirect=True) as env:
        yield env


@pytest.mark.parametrize("method", ["GET", "HEAD", "POST", "OPTIONS", "DELETE"])
def test_the_plain_port_redirects_every_request_to_https(redirecting, method: str):
    """308, so a POST stays a POST with its body; the path and query kept; on the served name
    the request asked for, at the HTTPS port."""
    port, tls_port = redirecting["TWINSTACK_HTTP_PORT"], redirecting["TWINSTACK_TLS_PORT"]
    for name in ("localhost", "127.0.0.1"):
        r = httpx.request(method, f"http://127.0.0.1:{port}/async/orders?x=1&y=%2F", headers={"host": f"{name}:{port}"})
        assert r.status_code == 308, (method, name)
        assert r.headers["location"] == f"https://{name}:{tls_port}/async/orders?x=1&y=%2F"
        assert "strict-transport-security" not in r.headers  # HSTS is only ever sent over HTTPS
        assert r.headers["x-content-type-options"] == "nosniff"


def test_the_redirect_never_points_at_a_foreign_host(redirecting):
    port = redirecting["TWINSTACK_HTTP_PORT"]
    for raw in (
        b"GET / HTTP/1.1\r\nHost: evil.example\r\n\r\n",
        b"GET http://evil.example/ HTTP/1.1\r\nHost: localhost\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: localhost@evil.example\r\n\r\n",
    ):
        with socket.create_connection(("127.0.0.1", int(port)), timeout=10) as sock:
            sock.sendall(raw)
            answer = sock.recv(65536)
        assert b"evil" not in answer.partition(b"\r\n\r\n")[0].lower(), answer
        assert re.match(rb"HTTP/1.1 (421|400) ", answer), answer


def test_https_is_served_when_the_plain_port_redirects(redirecting):
    r = httpx.get(
        f"https://localhost:{redirecting['TWINSTACK_TLS_PORT']}/static/style.css",
        verify=ssl.create_default_context(cafile=redirecting["TWINSTACK_TLS_CERTIFICATE"]),
    )
    assert r.status_code == 200 and r.headers["strict-transport-security"] == HSTS


# --- a new certificate, reloaded under load ---------------------------------------------


def served_certificate(stack: Stack) -> bytes:
    """The certificate a new connection is given (DER; compared, not verified)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    raw = socket.create_connection(("127.0.0.1", int(stack.env["TWINSTACK_TLS_PORT"])), timeout=10)
    with context.wrap_socket(raw, server_hostname="localhost") as tls:
        return tls.getpeercert(binary_form=True)


@pytest.mark.repeated
def test_a_renewed_certificate_is_served_after_a_reload_that_drops_nothing(stack: Stack):
    """What an ACME client's deploy hook does (docs/tls.md): the files replaced in place, then
    `make reload`. Twice, under HTTPS load on both pools: every request answered 200, and new
    connections get the new certificate."""
    folder = Path(stack.certificate).parent
    for _ in range(2):
        before = served_certificate(stack)
        # The load's clients trust the old certificate, and the new one as soon as it exists,
        # as clients trust a CA-signed certificate and its renewal alike.
        clients = trusting(stack)
        with SteadyLoad(stack.https_url, per_pool=4, verify=clients) as load:
            load.wait_for(lambda: min(load.ok(p) for p in PREFIXES) >= 20, "the load to run")
            make_certificate(folder)  # a new key and certificate at the same paths
            clients.load_verify_locations(stack.certificate)
            assert stack.native("reload").returncode == 0
            deadline = time.monotonic() + 10
            while served_certificate(stack) == before:
                assert time.monotonic() < deadline, "the reloaded nginx still serves the old certificate"
                time.sleep(0.1)
            ok = {p: load.ok(p) + 30 for p in PREFIXES}
            load.wait_for(lambda ok=ok: all(load.ok(p) >= ok[p] for p in PREFIXES), "30 more GETs per pool")
        assert load.failures() == {}, load.failures()
        # A resent GET is one nginx closed an idle connection on before reading it; one it had
        # read, and dropped, fails (its first attempt is in nginx's log).
        assert load.resends_nginx_read(stack.log_dir) == [], load.resent


# --- OCSP stapling ------------------------------------------------------------------------


def ca_signed_chain(folder: Path, ocsp_port: int) -> tuple[Path, Path, Path]:
    """A throwaway CA and a certificate for localhost it signed, naming an OCSP responder on
    loopback (as a public CA's names its own); returns the chain (leaf, then CA), the key and
    the CA's index for `openssl ocsp`."""
    folder.mkdir()

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=folder, check=True, capture_output=True)

    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    openssl("req", "-x509", *ec, "-days", "2", "-subj", "/CN=twinstack test CA", "-keyout", "ca.key",
            "-out", "ca.crt", "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign")  # fmt: skip
    openssl("req", "-new", *ec, "-subj", "/CN=localhost", "-keyout", "leaf.key", "-out", "leaf.csr")
    (folder / "ext").write_text(
        "subjectAltName=DNS:localhost\nextendedKeyUsage=serverAuth\n"
        f"authorityInfoAccess=OCSP;URI:http://127.0.0.1:{ocsp_port}\n"
    )
    openssl("x509", "-req", "-in", "leaf.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-set_serial", "0x1001",
            "-days", "1", "-extfile", "ext", "-out", "leaf.crt")  # fmt: skip
    chain = folder / "chain.crt"
    chain.write_text((folder / "leaf.crt").read_text() + (folder / "ca.crt").read_text())
    expiry = time.strftime("%y%m%d%H%M%SZ", time.gmtime(time.time() + 86400))
    (folder / "index.txt").write_text(f"V\t{expiry}\t\t1001\tunknown\t/CN=localhost\n")
    return chain, folder / "leaf.key", folder / "index.txt"


def stapled(port: str, ca: Path) -> str:
    """What a client asking for the certificate's status (`-status`) is sent in the handshake."""
    result = subprocess.run(
        ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-servername", "localhost", "-status",
         "-CAfile", str(ca)],
        input="", capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    return result.stdout


def test_ocsp_stapling_sends_the_cas_good_status_in_the_handshake(tmp_path: Path, nginx_bin: str):
    """TWINSTACK_TLS_STAPLING=on with a certificate whose CA runs a responder (here a local CA
    and `openssl ocsp` on loopback): nginx fetches the status and staples it; a client asking
    gets "good" without asking the CA. Off (the default), nothing is stapled."""
    ocsp_port = free_port()
    chain, key, index = ca_signed_chain(tmp_path / "ca", ocsp_port)
    ca = chain.parent / "ca.crt"
    responder = subprocess.Popen(
        ["openssl", "ocsp", "-index", str(index), "-port", str(ocsp_port), "-rsigner", str(ca),
         "-rkey", str(chain.parent / "ca.key"), "-CA", str(ca), "-nrequest", "20"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        for stapling in ("on", "off"):
            folder = tmp_path / stapling
            folder.mkdir()
            with nginx_alone(
                folder, TWINSTACK_TLS_STAPLING=stapling,
                TWINSTACK_TLS_CERTIFICATE=str(chain), TWINSTACK_TLS_CERTIFICATE_KEY=str(key),
            ) as env:  # fmt: skip
                # nginx fetches the status on the first handshake that asks, and staples it from then on.
                deadline = time.monotonic() + 15
                while "OCSP Response Status: successful" not in (answer := stapled(env["TWINSTACK_TLS_PORT"], ca)):
                    if stapling == "off" or time.monotonic() > deadline:
                        break
                    time.sleep(0.3)
            if stapling == "on":
                assert "OCSP Response Status: successful" in answer, answer
                assert "Cert Status: good" in answer and "Verify return code: 0 (ok)" in answer, answer
            else:
                assert "OCSP response: no response sent" in answer, answer
    finally:
        responder.terminate()
        responder.wait(timeout=10)
