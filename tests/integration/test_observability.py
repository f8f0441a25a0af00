"""Operating the stack: follow one request through the logs, count requests exactly over
every worker, see the event loop stall and the sync workers busy, and keep metrics private."""

from __future__ import annotations

import os
import re
import signal
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.integration import logs
from tests.integration.conftest import SYNC_WORKERS

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
    """nginx's access log and both pools' logs (their own messages included): one JSON object a
    line, each with the shared field names. nginx's own messages go to nginx-error.log."""
    ids = {prefix: client.get(f"{prefix}/io?delay_ms=1").headers["x-request-id"] for prefix in ("/async", "/sync")}
    assert logs.by_request_id(stack.log_dir, "nginx", ids.values()).keys() == set(ids.values())
    for name in logs.JSON_LOGS:
        records = logs.records(stack.log_dir, name)
        assert records, name
        assert all({"time", "level", "logger", "message"} <= set(r) for r in records), name
    assert any(r["logger"] == "gunicorn.error" for r in logs.records(stack.log_dir, "fastapi"))


def test_loop_lag_gauge_rises_during_cpu_in_the_loop(stack, client):
    """The gauge shows a stall of the loop, and falls back once the loop runs freely again: it
    follows the loop, it is not stuck at a value (which a test right after CPU-heavy work could
    not tell from a real lag)."""
    r = client.get("/async/lab/cpu-in-loop?work=1000000")
    assert r.status_code == 200
    stalled_for = r.json()["cpu_ms"] / 1000
    lag = metric(stack, "async", "twinstack_event_loop_lag_seconds")
    assert lag >= stalled_for * 0.5, f"loop stalled {stalled_for:.2f} s, gauge shows {lag:.2f} s"
    deadline = time.monotonic() + 30
    while (lag := metric(stack, "async", "twinstack_event_loop_lag_seconds")) >= stalled_for * 0.5:
        assert time.monotonic() < deadline, f"the gauge stayed at {lag:.2f} s after the loop was free"
        time.sleep(0.2)


def test_busy_workers_show_a_held_sync_worker(stack):
    assert metric(stack, "sync", "twinstack_workers") == SYNC_WORKERS
    slow = threading.Thread(target=httpx.get, args=(f"{stack.base_url}/sync/io?delay_ms=1500",), kwargs={"timeout": 10})
    slow.start()
    # One worker holds the slow request, the other answers this scrape: both busy. Polled
    # until the slow request is inside its worker (no fixed sleep).
    deadline = time.monotonic() + 5
    while (busy := metric(stack, "sync", "twinstack_workers_busy")) != SYNC_WORKERS:
        assert time.monotonic() < deadline, busy
        time.sleep(0.05)
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
    # asyncio runs a timer up to its clock's resolution early (loop._clock_resolution, about
    # 1 ms): a 50 ms wait can measure 49.9 ms, never less than that.
    assert float(re.fullmatch(r"app;dur=([\d.]+)", timing).group(1)) >= 49


def test_a_dead_workers_gauges_leave_the_metrics(stack):
    """child_exit drops a dead worker's live gauges (mark_process_dead): once the replacement
    has loaded the app (its gauge file exists), the pool counts exactly its workers, not the
    dead one too."""
    master = stack.master_pid("flask")
    children = Path(f"/proc/{master}/task/{master}/children")
    before = children.read_text().split()
    os.kill(int(before[0]), signal.SIGKILL)
    metrics_dir = stack.run_dir / "metrics-sync"
    deadline = time.monotonic() + 30
    while not (new := set(children.read_text().split()) - set(before)) or not any(
        metrics_dir.glob(f"gauge_livesum_{pid}.db") for pid in new
    ):
        assert time.monotonic() < deadline, "no replacement worker with its metrics"
        time.sleep(0.1)
    assert not list(metrics_dir.glob(f"gauge_live*_{before[0]}.db"))  # counters stay: they sum
    # The replacement sets its own gauge right after creating its file.
    while (workers := metric(stack, "sync", "twinstack_workers")) != SYNC_WORKERS:
        assert time.monotonic() < deadline, f"{workers} workers counted"
        time.sleep(0.1)


def test_a_new_master_starts_from_an_empty_metrics_directory(stack, client):
    """on_starting empties the pool's multiprocess directory: a restarted master's counters
    start at zero instead of adding up the previous run's files."""
    assert client.get("/sync/cpu?work=10").status_code == 200
    assert metric(stack, "sync", "twinstack_requests_total", route="/cpu") >= 1
    stack.ctl("restart", "flask")
    deadline = time.monotonic() + 30
    while client.get("/sync/ready").status_code != 200:
        assert time.monotonic() < deadline, "the sync pool did not come back"
        time.sleep(0.2)
    assert metric(stack, "sync", "twinstack_requests_total", route="/cpu") == 0
