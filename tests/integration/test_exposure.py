"""What the stack shows the outside: CORS only for configured origins, security headers, no
framework banners, internal listeners on loopback only."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.support import HALVES, PREFIXES

pytestmark = pytest.mark.integration

ALLOWED = "https://app.example.test"  # TWINSTACK_CORS_ORIGIN_REGEX of the test stack
FOREIGN = "https://evil.example.net"


@pytest.mark.parametrize("prefix", PREFIXES)
def test_cors_only_for_the_configured_origin(client: httpx.Client, prefix: str):
    allowed = client.get(f"{prefix}/health", headers={"Origin": ALLOWED})
    assert allowed.headers["access-control-allow-origin"] == ALLOWED
    assert "Origin" in allowed.headers["vary"]
    assert "X-Request-ID" in allowed.headers["access-control-expose-headers"]
    foreign = client.get(f"{prefix}/health", headers={"Origin": FOREIGN})
    assert foreign.status_code == 200  # served, but the browser will not expose it
    assert "access-control-allow-origin" not in foreign.headers


@pytest.mark.parametrize("prefix", PREFIXES)
def test_cors_preflight(client: httpx.Client, prefix: str):
    ask = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type"}
    ok = client.options(f"{prefix}/orders", headers={"Origin": ALLOWED, **ask})
    assert ok.status_code == 204
    assert ok.headers["access-control-allow-origin"] == ALLOWED
    assert "POST" in ok.headers["access-control-allow-methods"]
    assert "Content-Type" in ok.headers["access-control-allow-headers"]
    refused = client.options(f"{prefix}/orders", headers={"Origin": FOREIGN, **ask})
    assert refused.status_code == 204
    assert not any(h.startswith("access-control-allow") for h in refused.headers)


@pytest.mark.parametrize("path", ["/", "/static/style.css", *(f"{p}/health" for p in PREFIXES), "/no-such-page"])
def test_security_headers_and_no_banners(client: httpx.Client, path: str):
    r = client.get(path)
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["x-frame-options"] == "DENY"
    assert len(r.headers.get_list("x-request-id")) == 1
    assert r.headers["server"] == "nginx"  # no version (server_tokens off), no upstream banner
    banners = " ".join(f"{k}: {v}" for k, v in r.headers.items()).lower()
    for word in ("uvicorn", "gunicorn", "werkzeug", "python", "x-powered-by", "nginx/"):
        assert word not in banners, word


def listening_addresses() -> dict[int, set[str]]:
    """Port -> addresses with a listening TCP socket, from /proc/net/tcp{,6}."""
    found: dict[int, set[str]] = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            if state != "0A":  # LISTEN
                continue
            addr, port = local.split(":")
            if len(addr) == 8:
                ip = ".".join(str(int(addr[i : i + 2], 16)) for i in (6, 4, 2, 0))
            else:
                ip = "::" if addr == "0" * 32 else addr
            found.setdefault(int(port, 16), set()).add(ip)
    return found


def test_only_nginx_listens_beyond_loopback(stack):
    listening = listening_addresses()
    pools = tuple(f"TWINSTACK_{half.prefix.upper()}_PORT" for half in HALVES)
    internal = (*pools, "TWINSTACK_DOWNSTREAM_PORT", "TWINSTACK_LOCUST_PORT")
    internal += ("TWINSTACK_NGINX_STATUS_PORT", "TWINSTACK_DB_PORT")
    for var in internal:
        port = int(stack.env[var])
        assert listening.get(port) == {"127.0.0.1"}, (var, listening.get(port))
