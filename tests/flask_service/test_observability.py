"""The sync pool's metrics and timing, through the shared runtime."""

from __future__ import annotations

import pytest

from flask_service.main import create_app as create_flask
from flask_service.main import shutdown
from flask_service.settings import Settings as FlaskSettings


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
    app = create_flask(FlaskSettings(**settings_kwargs))
    try:
        client = app.test_client()
        client.environ_base["REMOTE_ADDR"] = "127.0.0.1"
        assert client.get("/metrics", headers={"X-Forwarded-Prefix": header}).status_code == 404
    finally:
        shutdown(app)
