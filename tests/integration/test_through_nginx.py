"""Every route, the landing page, static assets, docs, WebSocket and streaming, through nginx."""

from __future__ import annotations

import json
import time
from html.parser import HTMLParser
from urllib.parse import urljoin, urlparse

import httpx
import pytest

from tests.support import PREFIXES

pytestmark = pytest.mark.integration

ORDER = {"sku": "TS-1001", "quantity": 2, "unit_price_cents": 1999, "customer_email": "ada@example.com"}


@pytest.mark.parametrize("prefix", PREFIXES)
@pytest.mark.parametrize(
    ("path", "key", "value"),
    [
        ("/health", "status", "ok"),
        ("/ready", "status", "ready"),
        ("/io?delay_ms=20", "delay_ms", 20),
        ("/cpu?work=1000", "work", 1000),
        ("/fanout?calls=3&delay_ms=20", "calls", 3),
    ],
)
def test_get_routes(client: httpx.Client, prefix: str, path: str, key: str, value):
    r = client.get(prefix + path)
    assert r.status_code == 200, r.text
    assert r.json()[key] == value
    assert r.headers["content-type"].startswith("application/json")


@pytest.mark.parametrize("prefix", PREFIXES)
def test_orders(client: httpx.Client, prefix: str):
    r = client.post(f"{prefix}/orders", json=ORDER)
    assert r.status_code == 201
    assert r.json()["total_cents"] == 3998
    bad = client.post(f"{prefix}/orders", json={**ORDER, "quantity": 0})
    assert bad.status_code == 422
    assert bad.json()["error"]["details"][0]["loc"] == ["body", "quantity"]
    assert (
        client.post(f"{prefix}/orders", content=b"{", headers={"content-type": "application/json"}).status_code == 400
    )


@pytest.mark.parametrize("prefix", PREFIXES)
def test_jobs_run_after_the_202_has_reached_the_client(client: httpx.Client, prefix: str):
    """The 202 arrives while the job still has most of its 1.5 s to run: had the job run
    before the response (inline), the client would get the 202 only after finished_at. Both
    clocks are this machine's."""
    r = client.post(f"{prefix}/jobs", json={"delay_ms": 1500})
    received_at = time.time()
    assert r.status_code == 202 and r.json()["status"] == "queued"
    job_id = r.json()["job_id"]
    assert client.get(f"{prefix}/jobs/{job_id}").json()["status"] in ("queued", "running")
    deadline = time.monotonic() + 10
    while (job := client.get(f"{prefix}/jobs/{job_id}").json())["status"] != "done":
        assert time.monotonic() < deadline, job
        time.sleep(0.1)
    assert job["accepted_at"] <= job["started_at"] and job["finished_at"] - job["started_at"] >= 1.45
    assert received_at < job["finished_at"]


@pytest.mark.parametrize("prefix", PREFIXES)
def test_inspect_sees_the_client_and_request_id_nginx_set(client: httpx.Client, prefix: str):
    r = client.get(f"{prefix}/inspect", headers={"X-Forwarded-For": "203.0.113.66"})
    body = r.json()
    assert body["client_ip"] == "127.0.0.1"  # the test's own address; the forged header is not believed
    assert body["request_id"] == r.headers["x-request-id"]
    assert len(body["request_id"]) == 32  # nginx's $request_id
    assert body["prefix"] == prefix
    assert body["path"] == f"{prefix}/inspect"
    assert body["via_trusted_proxy"] is True
    assert body["host"] == urlparse(client.base_url.__str__()).netloc


@pytest.mark.parametrize("prefix", PREFIXES)
def test_request_id_kept_when_valid_replaced_when_not(client: httpx.Client, prefix: str):
    mine = client.get(f"{prefix}/inspect", headers={"X-Request-ID": "my-trace-0042"})
    assert mine.json()["request_id"] == mine.headers["x-request-id"] == "my-trace-0042"
    assert len(mine.headers.get_list("x-request-id")) == 1
    bad = client.get(f"{prefix}/inspect", headers={"X-Request-ID": "bad id <script>"})
    assert bad.json()["request_id"] == bad.headers["x-request-id"] != "bad id <script>"


@pytest.mark.parametrize("prefix", PREFIXES)
def test_streaming_arrives_in_chunks(stack, prefix: str):
    arrivals = []
    with httpx.stream("GET", f"{stack.base_url}{prefix}/stream?chunks=3&interval_ms=400", timeout=10) as r:
        assert r.headers["content-type"].startswith("application/x-ndjson")
        for line in r.iter_lines():
            if line:
                arrivals.append((time.monotonic(), json.loads(line)))
    assert [chunk["chunk"] for _, chunk in arrivals] == [1, 2, 3]
    # Buffered by the proxy, all three would arrive together; unbuffered they are ~0.8 s apart.
    assert arrivals[-1][0] - arrivals[0][0] >= 0.5


class Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in ("href", "src") and value:
                self.urls.append(value)


def test_landing_page_and_every_local_link(client: httpx.Client):
    r = client.get("/")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in r.headers["content-security-policy"]
    assert r.headers["cache-control"] == "no-cache"
    parser = Links()
    parser.feed(r.text)
    local = {u.split("#")[0] for u in parser.urls if u.startswith("/")}
    assert "/static/style.css" in local
    for prefix in PREFIXES:  # a project of one half has a page of its own (Copier renders it)
        assert {f"{prefix}/health", f"{prefix}/io?delay_ms=200"} <= local
    if "/async" in PREFIXES:
        assert {"/async/docs", "/async/redoc"} <= local
    assert not [u for u in local if u.startswith(("/async/", "/sync/")) and not u.startswith(PREFIXES)]
    for url in sorted(local):
        assert client.get(url, follow_redirects=True).status_code == 200, url
    external = [u for u in parser.urls if urlparse(urljoin("http://x/", u)).netloc != "x"]
    assert external == []


def test_locust_link_finds_the_configured_ui_port(stack, client: httpx.Client):
    r = client.get("/locust")
    assert r.status_code == 302
    assert r.headers["location"] == f"http://127.0.0.1:{stack.env['TWINSTACK_LOCUST_PORT']}/"


def test_static_assets_cached_and_compressed(client: httpx.Client):
    r = client.get("/static/style.css", headers={"Accept-Encoding": "gzip"})
    assert r.status_code == 200
    assert r.headers["cache-control"] == "public, max-age=604800"
    assert r.headers["content-encoding"] == "gzip"
    assert r.headers["vary"] == "Accept-Encoding"
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["server"] == "nginx"  # server_tokens off: no version
    assert "body" in r.text  # httpx decompressed it


@pytest.mark.parametrize(
    "path", ["/no-such-page", "/static/missing.css", "/async/no-such-route", "/sync/no-such-route"]
)
def test_404_is_json(client: httpx.Client, path: str):
    r = client.get(path)
    assert r.status_code == 404
    assert r.headers["content-type"].startswith("application/json")
    assert r.json()["error"]["code"] == "not_found"
    assert r.json()["error"]["request_id"] == r.headers["x-request-id"]


@pytest.mark.parametrize("prefix", PREFIXES)
def test_413_is_json_from_nginx(client: httpx.Client, prefix: str):
    r = client.post(f"{prefix}/orders", content=b"x" * 70_000, headers={"content-type": "application/json"})
    assert r.status_code == 413
    assert r.json()["error"]["code"] == "payload_too_large"
