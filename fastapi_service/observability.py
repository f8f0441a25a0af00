"""Per-request metrics, the access log line and Server-Timing for the ASGI app, plus the
event-loop lag monitor. The metric and field definitions are shared (twinstack_runtime)."""

from __future__ import annotations

import asyncio
import time
from collections import deque

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from twinstack_db.session import SQL_TIME
from twinstack_runtime.logs import log_request, server_timing
from twinstack_runtime.metrics import UNMATCHED, Metrics


class ObservabilityMiddleware:
    """Inside ForwardedMiddleware, so the request id and the real client are known. Adds
    ``Server-Timing`` and ``X-Request-ID`` to every response, records the metrics and writes
    the access line; ``metrics`` / ``access_log`` off skip those two (the lab measures each)."""

    def __init__(self, app: ASGIApp, metrics: Metrics, record_metrics: bool = True, access_log: bool = True) -> None:
        self.app = app
        self.metrics = metrics if record_metrics else None
        self.access_log = access_log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500
        rid = scope["state"]["request_id"]

        async def send_timed(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                # Appended as raw pairs: the app never sets either header itself.
                timing = server_timing(time.perf_counter() - start, SQL_TIME.get())
                extra = [(b"server-timing", timing.encode())]
                if rid:
                    extra.append((b"x-request-id", rid.encode()))
                message["headers"] = [*message.get("headers", ()), *extra]
            await send(message)

        SQL_TIME.set(0.0)  # this request's own: each ASGI request runs in a task of its own
        metrics = self.metrics
        if metrics is not None:
            metrics.started()
        try:
            await self.app(scope, receive, send_timed)
        finally:
            duration = time.perf_counter() - start
            route = getattr(scope.get("route"), "path", UNMATCHED)
            if metrics is not None:
                metrics.finished(route, scope["method"], status, duration)
            if self.access_log:
                client = scope.get("client")
                root_path = scope.get("root_path", "")
                log_request(
                    "fastapi",
                    rid,
                    scope["method"],
                    root_path + scope["path"].removeprefix(root_path),
                    route,
                    status,
                    duration,
                    client[0] if client else None,
                )


async def monitor_loop_lag(metrics: Metrics, interval: float = 0.1, window_s: float = 5.0) -> None:
    """Sleep ``interval`` and measure how late the loop wakes us: that is how long any ready
    task waits right now. Reports the worst of the last ``window_s`` seconds, so a stall is
    still visible to a scrape that comes after it (the loop cannot report while stalled)."""
    loop = asyncio.get_running_loop()
    samples: deque[tuple[float, float]] = deque()
    gauge = metrics.loop_lag.labels(metrics.service)
    while True:
        before = loop.time()
        await asyncio.sleep(interval)
        now = loop.time()
        samples.append((now, max(0.0, now - before - interval)))
        while samples and samples[0][0] < now - window_s:
            samples.popleft()
        gauge.set(max(lag for _, lag in samples))
