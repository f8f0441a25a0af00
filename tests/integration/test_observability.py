"""Operating the stack: follow one request through the logs, count requests exactly over
every worker, and keep metrics private. What one half alone shows (the event loop's stall, the
sync workers busy) is in that half's files: async_half/test_observability_async.py and
sync_half/test_observability_sync.py."""

from __future__ import annotations

import re
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from native import settings
from tests.integration import logs
from tests.support import HALVES, PREFIXES

pytestmark = pytest.mark.integration


def log_lines(stack, name: str) -> list[dict]:
    return logs.records(stack.log_dir, name)


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


@pytest.mark.parametrize(("prefix", "service"), [(f"/{half.prefix}", half.program) for half in HALVES])
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
    for other in (half.program for half in HALVES if half.program != service):
        assert all(line.get("request_id") != rid for line in log_lines(stack, other))


@pytest.mark.parametrize("pool", [half.prefix for half in HALVES])
def test_counters_are_exact_over_every_worker(stack, pool):
    """Requests spread over both workers (concurrent connections), counted once each in the
    pool's /metrics, which sums every worker's file: the counter and the histogram's own count
    grow by exactly the number sent."""
    labels = {"route": "/cpu", "method": "GET", "status": "200"}
    before = metric(stack, pool, "twinstack_requests_total", **labels)
    hist_before = metric(stack, pool, "twinstack_request_duration_seconds_count", route="/cpu", method="GET")
    served_by: set[str] = set()
    n = 0
    limits = httpx.Limits(max_connections=8)
    with httpx.Client(base_url=stack.base_url, timeout=30, limits=limits) as c, ThreadPoolExecutor(8) as pool_:
        while len(served_by) < 2 and n < 400:  # until two workers have served (bounded)
            bodies = list(pool_.map(lambda _: c.get(f"/{pool}/cpu?work=2000").json(), range(8)))
            served_by |= {b["served_by"] for b in bodies}
            n += len(bodies)
    assert len(served_by) >= 2, served_by
    assert metric(stack, pool, "twinstack_requests_total", **labels) - before == n
    hist = metric(stack, pool, "twinstack_request_duration_seconds_count", route="/cpu", method="GET")
    assert hist - hist_before == n


def test_the_stacks_logs_are_json_lines(stack, client):
    """nginx's access log and each pool's log (their own messages included): one JSON object a
    line, each with the shared field names. nginx's own messages go to nginx-error.log."""
    ids = {prefix: client.get(f"{prefix}/io?delay_ms=1").headers["x-request-id"] for prefix in PREFIXES}
    assert logs.by_request_id(stack.log_dir, "nginx", ids.values()).keys() == set(ids.values())
    absent = {half.program for half in settings.HALVES} - {half.program for half in HALVES}  # no pool, no log
    for name in [name for name in logs.JSON_LOGS if name not in absent]:
        records = logs.records(stack.log_dir, name)
        assert records, name
        assert all({"time", "level", "logger", "message"} <= set(r) for r in records), name
    for half in HALVES:
        assert any(r["logger"] == "gunicorn.error" for r in logs.records(stack.log_dir, half.program)), half.program


@pytest.mark.parametrize(
    "path",
    [
        *(prefix + path for prefix in PREFIXES for path in ("/metrics", "/metrics/", "//metrics", "/%6detrics")),
        "/nginx_status",
    ],
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


@pytest.mark.parametrize("prefix", PREFIXES)
def test_server_timing_reaches_the_browser(client, prefix):
    timing = client.get(f"{prefix}/io?delay_ms=50").headers["server-timing"]
    # asyncio runs a timer up to its clock's resolution early (loop._clock_resolution, about
    # 1 ms): a 50 ms wait can measure 49.9 ms, never less than that.
    assert float(re.fullmatch(r"app;dur=([\d.]+)", timing).group(1)) >= 49
