"""JSON logs and metrics, shared by both services."""

from __future__ import annotations

import json
import logging
import logging.config

import pytest
from fastapi.testclient import TestClient

from fastapi_service.main import create_app as create_fastapi
from fastapi_service.settings import Settings as FastAPISettings
from flask_service.main import create_app as create_flask
from flask_service.main import shutdown
from flask_service.settings import Settings as FlaskSettings
from twinstack_contract.logs import json_formatter, log_request, logging_config
from twinstack_contract.metrics import Metrics


def test_json_lines_with_the_shared_field_names():
    record = logging.LogRecord("twinstack.access", logging.INFO, __file__, 1, "request", None, None)
    record.request_id = "abc123456789"
    line = json.loads(json_formatter().format(record))
    assert {"time", "level", "logger", "pid", "message", "request_id"} <= set(line)
    assert line["time"].endswith("+00:00") and "T" in line["time"]


def test_logging_config_is_a_valid_dictconfig():
    logging.config.dictConfig(logging_config("warning"))
    try:
        assert logging.getLogger("gunicorn.error").level == logging.WARNING
        assert logging.getLogger("uvicorn.access").handlers == []
    finally:
        logging.config.dictConfig({"version": 1, "disable_existing_loggers": False})


def test_access_line_fields(caplog):
    with caplog.at_level(logging.INFO, logger="twinstack.access"):
        log_request("flask", "rid-0001-abc", "GET", "/sync/io", "/io", 200, 0.0123, "127.0.0.1")
    record = caplog.records[-1]
    assert (record.service, record.request_id, record.route, record.status, record.duration_ms) == (
        "flask",
        "rid-0001-abc",
        "/io",
        200,
        12.3,
    )


def test_metrics_count_and_track_busy():
    m = Metrics("test")
    m.started()
    m.started()
    m.finished("/io", "GET", 200, 0.01)
    text = m.exposition()[0].decode()
    assert 'twinstack_requests_total{method="GET",route="/io",service="test",status="200"} 1.0' in text
    assert 'twinstack_requests_in_flight{service="test"} 1.0' in text
    assert 'twinstack_workers_busy{service="test"} 1.0' in text
    m.finished("/io", "GET", 200, 0.01)
    assert 'twinstack_workers_busy{service="test"} 0.0' in m.exposition()[0].decode()


def test_fastapi_counts_by_route_template_and_sets_server_timing(settings_kwargs):
    with TestClient(create_fastapi(FastAPISettings(**settings_kwargs)), client=("127.0.0.1", 1)) as client:
        for job in ("a" * 32, "b" * 32):
            assert client.get(f"/jobs/{job}").status_code == 404
        r = client.get("/io?delay_ms=1")
        assert r.headers["server-timing"].startswith("app;dur=")
        text = client.get("/metrics").text
    assert 'route="/jobs/{job_id}",service="fastapi",status="404"} 2.0' in text  # one series, not two
    assert "twinstack_event_loop_lag_seconds" in text


def test_flask_counts_by_route_template_and_sets_server_timing(settings_kwargs):
    app = create_flask(FlaskSettings(**settings_kwargs))
    try:
        client = app.test_client()
        client.environ_base["REMOTE_ADDR"] = "127.0.0.1"
        client.get("/no/such/path")
        assert client.get("/io?delay_ms=1").headers["Server-Timing"].startswith("app;dur=")
        text = client.get("/metrics").get_data(as_text=True)
    finally:
        shutdown(app)
    assert 'route="<unmatched>",service="flask",status="404"} 1.0' in text


@pytest.mark.parametrize("header", ["/async", "/sync"])
def test_metrics_refused_when_reached_through_the_public_proxy(settings_kwargs, header):
    with TestClient(create_fastapi(FastAPISettings(**settings_kwargs)), client=("127.0.0.1", 1)) as client:
        assert client.get("/metrics", headers={"X-Forwarded-Prefix": header}).status_code == 404
    app = create_flask(FlaskSettings(**settings_kwargs))
    try:
        client = app.test_client()
        client.environ_base["REMOTE_ADDR"] = "127.0.0.1"
        assert client.get("/metrics", headers={"X-Forwarded-Prefix": header}).status_code == 404
    finally:
        shutdown(app)
