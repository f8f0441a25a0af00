"""The async pool's metrics and timing, through the shared runtime."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from fastapi_service.main import create_app as create_fastapi
from fastapi_service.settings import Settings as FastAPISettings


def test_fastapi_counts_by_route_template_and_sets_server_timing(settings_kwargs):
    with TestClient(create_fastapi(FastAPISettings(**settings_kwargs)), client=("127.0.0.1", 1)) as client:
        for job in ("a" * 32, "b" * 32):
            assert client.get(f"/jobs/{job}").status_code == 404
        r = client.get("/io?delay_ms=1")
        assert r.headers["server-timing"].startswith("app;dur=")
        text = client.get("/metrics").text
    assert 'route="/jobs/{job_id}",service="fastapi",status="404"} 2.0' in text  # one series, not two
    assert "twinstack_event_loop_lag_seconds" in text


@pytest.mark.parametrize("header", ["/async", "/sync"])
def test_metrics_refused_when_reached_through_the_public_proxy(settings_kwargs, header):
    with TestClient(create_fastapi(FastAPISettings(**settings_kwargs)), client=("127.0.0.1", 1)) as client:
        assert client.get("/metrics", headers={"X-Forwarded-Prefix": header}).status_code == 404
