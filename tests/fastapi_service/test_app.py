"""FastAPI-specific behaviour; what both services share is in tests/contract."""

from __future__ import annotations

import time

import pytest
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from fastapi_service.main import create_app
from fastapi_service.settings import Settings


def test_lifespan_marks_ready_and_docs_are_served(client: TestClient):
    assert client.get("/ready").json()["checks"] == {"downstream": "ok"}
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


def test_fanout_calls_run_concurrently(client: TestClient):
    r = client.get("/fanout?calls=5&delay_ms=200")
    assert r.status_code == 200
    # Sequential calls would need 1000 ms; generous margin, only the shape is asserted.
    assert r.json()["elapsed_ms"] < 800


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


def test_job_runs_after_the_response(client: TestClient):
    r = client.post("/jobs", json={"delay_ms": 300})
    assert r.status_code == 202
    job = r.json()
    assert job["status"] == "queued"
    # TestClient runs background tasks before returning; the record proves the order anyway.
    done = client.get(f"/jobs/{job['job_id']}").json()
    assert done["status"] == "done"
    assert done["started_at"] >= job["accepted_at"]
    assert done["finished_at"] - done["started_at"] >= 0.25


@pytest.mark.parametrize("path", ["/lab/blocking-sleep?delay_ms=10", "/lab/to-thread-sleep?delay_ms=10"])
def test_lab_sleep_endpoints(client: TestClient, path: str):
    assert client.get(path).json()["waited_ms"] >= 10


def test_lab_cpu_endpoints_compute_the_same_digest(client: TestClient):
    in_loop = client.get("/lab/cpu-in-loop?work=2000").json()
    in_pool = client.get("/lab/cpu-in-process-pool?work=2000").json()
    assert in_loop["digest"] == in_pool["digest"] == client.get("/cpu?work=2000").json()["digest"]


def test_lab_endpoints_validate_like_the_contract(client: TestClient):
    assert client.get("/lab/blocking-sleep?delay_ms=999999").status_code == 422
    assert client.get("/lab/cpu-in-loop?work=0").status_code == 422


def test_websocket_echo(client: TestClient):
    with client.websocket_connect("/ws/echo") as ws:
        for text in ("hello", "héllo ✓", ""):
            ws.send_text(text)
            assert ws.receive_text() == text


def test_websocket_rejects_oversized_message(client: TestClient):
    with client.websocket_connect("/ws/echo") as ws:
        ws.send_text("x" * (64 * 1024 + 1))
        with pytest.raises(WebSocketDisconnect) as exc:
            ws.receive_text()
    assert exc.value.code == 1009


def test_unhandled_error_is_500_json(app, client: TestClient):
    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("boom")

    with TestClient(app, raise_server_exceptions=False) as c:
        r = c.get("/boom")
    assert r.status_code == 500
    assert r.json()["error"]["code"] == "internal_error"
    assert "boom" not in r.text  # no internals leak


def test_stream_yields_lines_as_they_are_made(client: TestClient):
    start = time.perf_counter()
    with client.stream("GET", "/stream?chunks=3&interval_ms=100") as r:
        lines = [line for line in r.iter_lines() if line]
    assert len(lines) == 3
    assert time.perf_counter() - start >= 0.2
