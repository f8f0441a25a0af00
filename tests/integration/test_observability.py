"""Operating the stack: follow one request through the logs, count requests exactly over
every worker, see the event loop stall and the sync workers busy, and keep metrics private."""

from __future__ import annotations

import json
import re
import threading
import time
import uuid

import httpx
import pytest

from tests.integration.conftest import SYNC_WORKERS

pytestmark = pytest.mark.integration


def log_lines(stack, name: str) -> list[dict]:
    lines = []
    for raw in (stack.log_dir / f"{name}.log").read_text().splitlines():
        if raw.startswith("{"):
            try:
                lines.append(json.loads(raw))
            except ValueError:
                continue  # the last line, still being written: read again on the next poll
    return lines


def wait_for_line(stack, name: str, request_id: str, timeout: float = 10) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in log_lines(stack, name):
            if line.get("request_id") == request_id:
                return line
        time.sleep(0.1)
    pytest.fail(f"request id {request_id} not in {name}.log")


def metric(stack, pool: str, name: str, **labels: str) -> float:
    port = stack.env["TWINSTACK_ASYNC_PORT" if pool == "async" else "TWINSTACK_SYNC_PORT"]
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    total = 0.0
    for line in text.splitlines():
        m = re.match(rf"^{name}\{{(.*)\}} (\S+)$", line)
        if m and all(f'{k}="{v}"' in m.group(1) for k, v in labels.items()):
            total += float(m.group(2))
    return total


@pytest.mark.parametrize(("prefix", "service"), [("/async", "fastapi"), ("/sync", "flask")])
def test_one_request_found_by_its_id_in_nginx_and_its_service(stack, client, prefix, service):
    rid = f"trace-{uuid.uuid4().hex[:12]}"
    assert client.get(f"{prefix}/io?delay_ms=5", headers={"X-Request-ID": rid}).status_code == 200
    edge = wait_for_line(stack, "nginx", rid)
    app = wait_for_line(stack, service, rid)
    assert edge["path"] == app["path"] == f"{prefix}/io"
    assert edge["status"] == app["status"] == 200
    assert edge["upstream_addr"].endswith(
        stack.env["TWINSTACK_ASYNC_PORT" if service == "fastapi" else "TWINSTACK_SYNC_PORT"]
    )
    assert isinstance(edge["request_time"], float) and app["duration_ms"] > 0
    assert {"time", "level", "logger", "message", "request_id", "method", "path", "status", "client_ip"} <= set(
        edge
    ) & set(app)
    other = "flask" if service == "fastapi" else "fastapi"
    assert all(line.get("request_id") != rid for line in log_lines(stack, other))


@pytest.mark.parametrize("pool", ["async", "sync"])
def test_counters_are_exact_over_every_worker(stack, client, pool):
    labels = {"route": "/cpu", "method": "GET", "status": "200"}
    before = metric(stack, pool, "twinstack_requests_total", **labels)
    n = 23
    with httpx.Client(base_url=stack.base_url, timeout=30) as c:
        served_by = {c.get(f"/{pool}/cpu?work=100").json()["served_by"] for _ in range(n)}
    assert metric(stack, pool, "twinstack_requests_total", **labels) - before == n
    assert metric(stack, pool, "twinstack_request_duration_seconds_count", route="/cpu") - before >= n
    assert len(served_by) >= 1  # however many workers took part, the sum is exact


def test_loop_lag_gauge_rises_during_cpu_in_the_loop(stack, client):
    assert metric(stack, "async", "twinstack_event_loop_lag_seconds") < 0.5
    r = client.get("/async/lab/cpu-in-loop?work=1000000")
    assert r.status_code == 200
    stalled_for = r.json()["cpu_ms"] / 1000
    lag = metric(stack, "async", "twinstack_event_loop_lag_seconds")
    assert lag >= stalled_for * 0.5, f"loop stalled {stalled_for:.2f} s, gauge shows {lag:.2f} s"


def test_busy_workers_show_a_held_sync_worker(stack):
    assert metric(stack, "sync", "twinstack_workers") == SYNC_WORKERS
    slow = threading.Thread(target=httpx.get, args=(f"{stack.base_url}/sync/io?delay_ms=1500",), kwargs={"timeout": 10})
    slow.start()
    time.sleep(0.4)
    # One worker holds the slow request, the other answers this scrape: both busy.
    assert metric(stack, "sync", "twinstack_workers_busy") == SYNC_WORKERS
    assert metric(stack, "sync", "twinstack_requests_in_flight") == 2
    slow.join()


@pytest.mark.parametrize(
    "path",
    ["/async/metrics", "/sync/metrics", "/async/metrics/", "/async//metrics", "/sync/%6detrics", "/nginx_status"],
)
def test_metrics_are_not_public(client, path):
    r = client.get(path)
    assert r.status_code == 404
    assert "twinstack_requests_total" not in r.text and "Active connections" not in r.text
    assert r.json()["error"]["code"] == "not_found"


def test_stub_status_on_loopback(stack):
    r = httpx.get(f"http://127.0.0.1:{stack.env['TWINSTACK_NGINX_STATUS_PORT']}/nginx_status", timeout=5)
    assert r.status_code == 200
    assert r.text.startswith("Active connections:")


@pytest.mark.parametrize("prefix", ["/async", "/sync"])
def test_server_timing_reaches_the_browser(client, prefix):
    timing = client.get(f"{prefix}/io?delay_ms=50").headers["server-timing"]
    assert float(re.fullmatch(r"app;dur=([\d.]+)", timing).group(1)) >= 50
