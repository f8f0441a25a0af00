"""Flask-specific behaviour; what both services share is in tests/contract."""

from __future__ import annotations

import time

import pytest
from flask import Flask
from flask.testing import FlaskClient

from flask_service.main import create_app, shutdown
from flask_service.settings import Settings


def test_ready_is_503_json_when_downstream_is_down(settings_kwargs: dict):
    app = create_app(Settings(**{**settings_kwargs, "downstream_url": "http://127.0.0.1:9"}))
    try:
        r = app.test_client().get("/ready")
        assert r.status_code == 503
        assert r.json["error"]["code"] == "not_ready"
        assert app.test_client().get("/health").status_code == 200
    finally:
        shutdown(app)


def test_fanout_calls_run_one_after_another(client: FlaskClient):
    r = client.get("/fanout?calls=3&delay_ms=100")
    assert r.json["elapsed_ms"] >= 300


def test_forwarded_headers_believed_from_trusted_proxy(client: FlaskClient):
    r = client.get(
        "/inspect",
        headers={
            "X-Forwarded-For": "203.0.113.7",
            "X-Forwarded-Proto": "https",
            "X-Forwarded-Prefix": "/sync",
            "X-Request-ID": "trace-0001-abc",
        },
    )
    body = r.json
    assert body["client_ip"] == "203.0.113.7"
    assert body["scheme"] == "https"
    assert body["prefix"] == "/sync"
    assert body["path"] == "/sync/inspect"
    assert body["request_id"] == r.headers["X-Request-ID"] == "trace-0001-abc"


def test_forwarded_headers_ignored_from_untrusted_peer(app: Flask):
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = "198.51.100.9"
    body = client.get(
        "/inspect",
        headers={"X-Forwarded-For": "203.0.113.7", "X-Forwarded-Prefix": "/evil", "X-Request-ID": "forged-id-123"},
    ).json
    assert body["client_ip"] == "198.51.100.9"
    assert body["prefix"] == ""
    assert body["request_id"] != "forged-id-123"
    assert body["via_trusted_proxy"] is False


@pytest.mark.parametrize("prefix", ["/../etc", "sync", "/a b"])
def test_malformed_prefix_is_ignored(client: FlaskClient, prefix: str):
    assert client.get("/inspect", headers={"X-Forwarded-Prefix": prefix}).json["prefix"] == ""


def test_job_starts_only_after_the_response_is_closed(client: FlaskClient):
    r = client.post("/jobs", json={"delay_ms": 50})
    job = r.json
    assert r.status_code == 202
    # Not submitted yet: the WSGI server has not closed the response.
    assert client.get(f"/jobs/{job['job_id']}").json["status"] == "queued"
    r.close()
    deadline = time.monotonic() + 5
    while client.get(f"/jobs/{job['job_id']}").json["status"] != "done":
        assert time.monotonic() < deadline, "job never finished"
        time.sleep(0.02)


def test_body_over_limit_is_413_json(client: FlaskClient):
    r = client.post("/orders", data=b"{" + b" " * 70_000 + b"}", headers={"Content-Type": "application/json"})
    assert r.status_code == 413
    assert r.json["error"]["code"] == "payload_too_large"


def test_unhandled_error_is_500_json(settings_kwargs: dict):
    app = create_app(Settings(**settings_kwargs))

    @app.get("/boom")
    def boom() -> None:
        raise RuntimeError("boom")

    try:
        r = app.test_client().get("/boom")
        assert r.status_code == 500
        assert r.json["error"]["code"] == "internal_error"
        assert "boom" not in r.get_data(as_text=True)
    finally:
        shutdown(app)


def test_405_keeps_the_allow_header(client: FlaskClient):
    r = client.delete("/health")
    assert r.status_code == 405
    assert "GET" in r.headers["Allow"]


def test_the_resources_are_flask_extensions_closed_by_shutdown(settings_kwargs):
    """Set up by each extension's init_app, reached through current_app, closed by shutdown
    (what gunicorn's worker_exit calls): the downstream client refuses work afterwards and the
    job threads are gone."""
    from flask_service.extensions import downstream, jobs
    from flask_service.main import create_app, shutdown
    from flask_service.settings import Settings

    app = create_app(Settings(**settings_kwargs))
    with app.app_context():
        client, runner = downstream.client, jobs.runner
        assert client is app.extensions["downstream"] and runner is app.extensions["jobs"]
    assert client.get("/health").status_code == 200
    shutdown(app)
    assert client.is_closed
    with pytest.raises(RuntimeError):
        client.get("/health")
    assert not any(t.is_alive() for t in runner._threads)
