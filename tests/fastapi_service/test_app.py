"""FastAPI-specific behaviour; what both services share is in tests/contract."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import re
import time
from html.parser import HTMLParser

import anyio.to_thread
import pytest
from fastapi.testclient import TestClient
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.websockets import WebSocketDisconnect

from fastapi_service.main import create_app
from fastapi_service.settings import Settings
from tests.support import serving


def test_lifespan_marks_ready_and_docs_are_served(client: TestClient):
    assert client.get("/ready").json()["checks"] == {"downstream": "ok", "database": "ok"}
    assert client.get("/docs").status_code == 200
    assert client.get("/redoc").status_code == 200
    assert "/io" in client.get("/openapi.json").json()["paths"]


def test_ready_is_503_json_when_downstream_is_down(settings_kwargs: dict):
    settings = Settings(**{**settings_kwargs, "downstream_url": "http://127.0.0.1:9"})
    with TestClient(create_app(settings)) as client:
        r = client.get("/ready")
        assert r.status_code == 503
        assert r.json()["error"]["code"] == "not_ready"
        assert client.get("/health").status_code == 200  # liveness never checks dependencies


def test_ready_is_503_before_startup_finished(settings_kwargs: dict):
    client = TestClient(create_app(Settings(**settings_kwargs)))  # no `with`: lifespan not run
    r = client.get("/ready")
    assert r.status_code == 503
    assert r.json()["error"]["message"] == "Startup has not finished."


def barrier(calls: int) -> Starlette:
    """A downstream that answers no /delay until ``calls`` of them are waiting at once (then all),
    and answers 504 to those that waited 10 s for the rest: only calls in flight together pass."""
    arrived, everyone = 0, asyncio.Event()

    async def delay(request: Request) -> JSONResponse:
        nonlocal arrived
        arrived += 1
        if arrived == calls:
            everyone.set()
        try:
            await asyncio.wait_for(everyone.wait(), 10)
        except TimeoutError:
            return JSONResponse({"arrived": arrived}, status_code=504)
        return JSONResponse({"delayed_ms": 0})

    return Starlette(routes=[Route("/delay", delay)])


def test_fanout_calls_run_concurrently(settings_kwargs: dict):
    """All 20 calls are waiting on the downstream at the same time: one after another, the first
    would wait alone for the barrier's 504."""
    with serving(barrier(20)) as downstream:
        settings = Settings(**{**settings_kwargs, "downstream_url": downstream})
        with TestClient(create_app(settings), client=("127.0.0.1", 40000)) as client:
            r = client.get("/fanout?calls=20&delay_ms=200")
    assert r.status_code == 200, r.text
    assert r.json()["calls"] == 20


def test_forwarded_headers_believed_from_trusted_proxy(client: TestClient):
    r = client.get(
        "/inspect",
        headers={
            "X-Forwarded-For": "203.0.113.7",
            "X-Forwarded-Proto": "https",
            "X-Forwarded-Prefix": "/async",
            "X-Request-ID": "trace-0001-abc",
        },
    )
    body = r.json()
    assert body["client_ip"] == "203.0.113.7"
    assert body["scheme"] == "https"
    assert body["prefix"] == "/async"
    assert body["path"] == "/async/inspect"
    assert body["request_id"] == r.headers["x-request-id"] == "trace-0001-abc"
    assert body["via_trusted_proxy"] is True


def test_forwarded_headers_ignored_from_untrusted_peer(settings_kwargs: dict):
    with TestClient(create_app(Settings(**settings_kwargs)), client=("198.51.100.9", 5000)) as client:
        r = client.get(
            "/inspect",
            headers={"X-Forwarded-For": "203.0.113.7", "X-Forwarded-Prefix": "/evil", "X-Request-ID": "forged-id-123"},
        )
    body = r.json()
    assert body["client_ip"] == "198.51.100.9"
    assert body["prefix"] == ""
    assert body["request_id"] != "forged-id-123"
    assert body["via_trusted_proxy"] is False


@pytest.mark.parametrize("prefix", ["/../etc", "async", "/a b", "/a?x=1"])
def test_malformed_prefix_is_ignored(client: TestClient, prefix: str):
    assert client.get("/inspect", headers={"X-Forwarded-Prefix": prefix}).json()["prefix"] == ""


def test_docs_use_the_forwarded_prefix(client: TestClient):
    assert "'/async/openapi.json'" in client.get("/docs", headers={"X-Forwarded-Prefix": "/async"}).text
    schema = client.get("/openapi.json", headers={"X-Forwarded-Prefix": "/async"}).json()
    assert schema["servers"] == [{"url": "/async"}]


class DocsPage(HTMLParser):
    """The URLs a docs page references and the bodies of its inline scripts."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.inline_scripts: list[str] = []
        self._inline: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.urls += [value for name, value in attrs if name in ("href", "src", "spec-url") and value]
        if tag == "script" and not dict(attrs).get("src"):
            self._inline = []

    def handle_data(self, data: str) -> None:
        if self._inline is not None:
            self._inline.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "script" and self._inline is not None:
            self.inline_scripts.append("".join(self._inline))
            self._inline = None


# The system's mime.types may name JavaScript either way; both are served as script.
CONTENT_TYPES = {".js": ("text/javascript", "application/javascript"), ".css": ("text/css",), ".png": ("image/png",)}


@pytest.mark.parametrize("path", ["/docs", "/redoc"])
def test_docs_pages_load_only_their_own_assets_under_a_strict_csp(client: TestClient, path: str):
    r = client.get(path, headers={"X-Forwarded-Prefix": "/async"})
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    assert not re.search(r"https?://", r.text)  # no CDN, no web font
    page = DocsPage()
    page.feed(r.text)
    assets = [url for url in page.urls if url != "/async/openapi.json"]
    assert assets and all(url.startswith("/async/docs-assets/") for url in assets)

    policy = dict(d.strip().split(" ", 1) for d in r.headers["content-security-policy"].split(";"))
    assert policy["default-src"] == "'none'"
    assert policy["frame-ancestors"] == "'none'"
    # Exactly this page's inline scripts are allowed, by hash: no 'unsafe-inline', no eval.
    hashes = {f"'sha256-{base64.b64encode(hashlib.sha256(s.encode()).digest()).decode()}'" for s in page.inline_scripts}
    assert len(hashes) == len(page.inline_scripts) == (1 if path == "/docs" else 0)
    assert set(policy["script-src"].split()) == {"'self'", *hashes}

    for url in assets:
        asset = client.get(url.removeprefix("/async"))  # no nginx here to strip the prefix
        assert asset.status_code == 200, url
        assert asset.headers["content-type"].startswith(CONTENT_TYPES[url[url.rindex(".") :]]), url


def test_docs_routes_stay_out_of_the_schema(client: TestClient):
    paths = client.get("/openapi.json").json()["paths"]
    assert not [p for p in paths if p.startswith(("/docs", "/redoc"))]


def wait_for_job(client: TestClient, job_id: str, status: str, timeout_s: float = 10) -> dict:
    deadline = time.monotonic() + timeout_s
    while (job := client.get(f"/jobs/{job_id}").json())["status"] != status:
        assert time.monotonic() < deadline, job
        time.sleep(0.02)
    return job


def test_a_job_runs_its_work_on_its_own_threads_once_accepted(client: TestClient):
    # That it starts only once the 202 has reached the client is shown through nginx, where
    # the response really travels: tests/integration/test_through_nginx.py. Here: accepted as
    # queued, then started no earlier than accepted, and given its whole delay.
    r = client.post("/jobs", json={"delay_ms": 300})
    assert r.status_code == 202
    job = r.json()
    assert job["status"] == "queued"
    done = wait_for_job(client, job["job_id"], "done")
    assert done["started_at"] >= job["accepted_at"]
    assert done["finished_at"] - done["started_at"] >= 0.25


def test_a_full_job_queue_answers_503_at_once_and_frees_as_jobs_finish(settings_kwargs: dict):
    settings = Settings(**settings_kwargs, job_threads=1, job_capacity=2)
    with TestClient(create_app(settings), client=("127.0.0.1", 40000)) as client:
        held = [client.post("/jobs", json={"delay_ms": 400}).json() for _ in range(2)]
        r = client.post("/jobs", json={"delay_ms": 0})
        assert r.status_code == 503 and r.json()["error"]["code"] == "jobs_busy"
        # The server's own thread pool is untouched: a plain `def` route answers meanwhile.
        assert client.get("/cpu?work=1").status_code == 200
        for job in held:
            wait_for_job(client, job["job_id"], "done")
        assert client.post("/jobs", json={"delay_ms": 0}).status_code == 202


def test_stopping_fails_queued_and_running_jobs_instead_of_waiting(settings_kwargs: dict):
    settings = Settings(**settings_kwargs, job_threads=1, job_capacity=3, job_stop_grace_s=0.2)
    client = TestClient(create_app(settings), client=("127.0.0.1", 40000))
    with client:
        ids = [client.post("/jobs", json={"delay_ms": 5_000}).json()["job_id"] for _ in range(3)]
        wait_for_job(client, ids[0], "running")
    # The lifespan's stop did not wait for the 15 s of jobs: none of them finished.
    # What the stopped worker recorded, read by another (a new app on the same database).
    with TestClient(create_app(settings), client=("127.0.0.1", 40000)) as other:
        jobs = [other.get(f"/jobs/{job_id}").json() for job_id in ids]
    assert [j["status"] for j in jobs] == ["failed"] * 3
    assert jobs[0]["error"].startswith("interrupted") and all(j["error"].startswith("cancelled") for j in jobs[1:])


def test_the_app_has_no_lab_route(client: TestClient):
    """The lab's anti-patterns live in bench/lab_app.py, which wraps this app; no deployment
    serves them."""
    lab = ("blocking-sleep", "to-thread-sleep", "blocking-db", "to-thread-db", "cpu-in-loop", "cpu-in-process-pool")
    for path in (f"/lab/{name}" for name in lab):
        assert client.get(path).status_code == 404, path
    assert not [p for p in client.get("/openapi.json").json()["paths"] if p.startswith("/lab/")]


def test_websocket_echo(client: TestClient):
    with client.websocket_connect("/ws/echo") as ws:
        for text in ("hello", "héllo ✓", ""):
            ws.send_text(text)
            assert ws.receive_text() == text


def test_websocket_is_closed_when_idle(settings_kwargs: dict):
    # The 64 KiB message cap is the server's (fastapi_service/worker.py): tested through the
    # real stack, tests/integration/test_hardening.py.
    with (
        TestClient(create_app(Settings(**settings_kwargs, ws_idle_timeout_s=0.3))) as client,
        client.websocket_connect("/ws/echo") as ws,
    ):
        ws.send_text("hi")
        assert ws.receive_text() == "hi"
        with pytest.raises(WebSocketDisconnect) as exc:
            ws.receive_text()
    assert exc.value.code == 1001


def test_websocket_is_closed_at_its_lifetime_even_when_busy(settings_kwargs: dict):
    with (
        TestClient(create_app(Settings(**settings_kwargs, ws_max_lifetime_s=0.5))) as client,
        client.websocket_connect("/ws/echo") as ws,
    ):
        deadline = time.monotonic() + 5
        with pytest.raises(WebSocketDisconnect) as exc:
            while True:
                assert time.monotonic() < deadline
                ws.send_text("x")
                ws.receive_text()
                time.sleep(0.05)
    assert exc.value.code == 1001


def test_unhandled_error_is_500_json(app):
    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("boom")

    with TestClient(app, raise_server_exceptions=False) as c:
        r = c.get("/boom")
    assert r.status_code == 500
    assert r.json()["error"]["code"] == "internal_error"
    assert "boom" not in r.text  # no internals leak


def test_each_lifespan_closes_what_it_opened(app):
    """Two lifespans of one app (nested test clients) each close their own pool. A pool left
    open keeps retrying its connections while its loop shuts down: it once held a teardown for
    pytest-timeout's 180 s."""
    with TestClient(app):
        outer = app.state.db.pool.pool  # psycopg_pool's
        with TestClient(app):
            inner = app.state.db.pool.pool
        assert inner.closed and not outer.closed
    assert outer.closed


def test_stream_makes_each_line_at_its_interval(client: TestClient):
    """Each line is made when its interval comes, not all at the end (the test client gathers
    the body, so that each also reaches the client as it is made is shown through nginx:
    tests/integration/test_through_nginx.py)."""
    with client.stream("GET", "/stream?chunks=3&interval_ms=100") as r:
        lines = [json.loads(line) for line in r.iter_lines() if line]
    assert [line["chunk"] for line in lines] == [1, 2, 3]
    made = [line["elapsed_ms"] for line in lines]
    assert made[1] - made[0] >= 90 and made[2] - made[1] >= 90, made


@pytest.mark.parametrize(
    ("method", "path", "headers"),
    [
        ("GET", "/orders", {}),
        ("POST", "/orders", {}),
        ("POST", "/orders", {"Idempotency-Key": "hot-path"}),
        ("GET", "/orders/{order_id}", {}),
        ("GET", "/db?delay_ms=1", {}),
        ("GET", "/ready", {}),
    ],
)
def test_the_database_routes_never_enter_the_thread_pool(
    client: TestClient, monkeypatch: pytest.MonkeyPatch, method: str, path: str, headers: dict
):
    """Every step of a database request runs on the event loop: FastAPI sends a plain ``def``
    dependency or route to anyio's thread pool, which would cost a thread hop per request."""
    order = {"sku": "HOT-1", "quantity": 1, "unit_price_cents": 100, "customer_email": "a@example.com"}
    order_id = client.post("/orders", json=order).json()["order_id"]
    hops: list[object] = []
    real = anyio.to_thread.run_sync

    async def counted(func, *args, **kwargs):
        hops.append(func)
        return await real(func, *args, **kwargs)

    monkeypatch.setattr(anyio.to_thread, "run_sync", counted)
    body = order if method == "POST" else None
    r = client.request(method, path.format(order_id=order_id), json=body, headers=headers)
    assert r.status_code in (200, 201), r.text
    assert hops == []
    # The check can fail: a plain def route is seen.
    assert client.get("/cpu?work=1").status_code == 200 and hops
