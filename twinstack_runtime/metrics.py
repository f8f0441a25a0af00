"""Prometheus metrics, the same for both services, in prometheus-client's multiprocess mode
when PROMETHEUS_MULTIPROC_DIR is set (each gunicorn.conf.py sets it before any worker
imports this), so /metrics of a pool sums every worker."""

from __future__ import annotations

import os
import threading

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

UNMATCHED = "<unmatched>"  # the route label of a 404: keeps label cardinality bounded
# Every label value comes from a closed set: a client must not mint a new series (a file per
# worker in multiprocess mode, kept until restart) by inventing a method. nginx refuses other
# methods already; this holds for a request that reaches a pool directly too.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
OTHER_METHOD = "OTHER"
DB_WAIT_BUCKETS = (0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 2.5, 5.0)
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class Metrics:
    """The metrics of one app instance (one per gunicorn worker). Each instance has its own
    registry, so tests can build many apps; in multiprocess mode the values are files that
    /metrics sums over every worker, dead ones included for counters."""

    def __init__(self, service: str) -> None:
        self.service = service
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "twinstack_requests",
            "Requests served, by route template.",
            ["service", "route", "method", "status"],
            registry=r,
        )
        self.duration = Histogram(
            "twinstack_request_duration_seconds",
            "Time in the app per request (to the first byte of a streamed body).",
            ["service", "route", "method"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.in_flight = Gauge(
            "twinstack_requests_in_flight",
            "Requests being served now.",
            ["service"],
            multiprocess_mode="livesum",
            registry=r,
        )
        self.workers = Gauge(
            "twinstack_workers", "Live worker processes.", ["service"], multiprocess_mode="livesum", registry=r
        )
        self.busy = Gauge(
            "twinstack_workers_busy",
            "Workers serving at least one request (idle = workers - busy).",
            ["service"],
            multiprocess_mode="livesum",
            registry=r,
        )
        self.loop_lag = Gauge(
            "twinstack_event_loop_lag_seconds",
            "Worst event-loop delay of the last 5 s (async pool): how long a ready task waited.",
            ["service"],
            multiprocess_mode="livemax",
            registry=r,
        )
        # The worker's database pool (twinstack_db/pool.py): open and checked out now, its
        # configured size (summed over live workers: the pool's connection budget), and how long
        # requests wait for a connection.
        self.db_connections = Gauge(
            "twinstack_db_connections",
            "Database connections of the pool's workers, by state: open, or checked out by a request.",
            ["service", "state"],
            multiprocess_mode="livesum",
            registry=r,
        )
        self.db_pool_limit = Gauge(
            "twinstack_db_pool_limit",
            "Configured connections per pool (pool_size), summed over live workers.",
            ["service", "limit"],
            multiprocess_mode="livesum",
            registry=r,
        )
        self.db_wait = Histogram(
            "twinstack_db_pool_wait_seconds",
            "Time a request waited for a pooled database connection.",
            ["service"],
            buckets=DB_WAIT_BUCKETS,
            registry=r,
        )
        self._db_wait = self.db_wait.labels(service)
        self.workers.labels(service).set(1)
        # The hot path (two calls per request) touches as few values as it can: each one is a
        # write to a memory-mapped file in multiprocess mode. Labelled children are looked up
        # once (``labels()`` validates and locks on every call), and the busy gauge is written
        # only when this worker goes from idle to busy or back.
        self._in_flight = self.in_flight.labels(service)
        self._busy = self.busy.labels(service)
        self._counters: dict[tuple[str, str, int], Counter] = {}
        self._histograms: dict[tuple[str, str], Histogram] = {}
        self._active = 0
        self._lock = threading.Lock()

    def started(self) -> None:
        with self._lock:
            self._active += 1
            self._in_flight.inc()
            if self._active == 1:
                self._busy.set(1)

    def finished(self, route: str, method: str, status: int, duration_s: float) -> None:
        with self._lock:
            self._active -= 1
            self._in_flight.dec()
            if self._active == 0:
                self._busy.set(0)
        method = method if method in METHODS else OTHER_METHOD
        # Every key is from a closed set (routes, methods, status codes), so these stay small.
        counter = self._counters.get((route, method, status))
        if counter is None:
            counter = self._counters[route, method, status] = self.requests.labels(
                self.service, route, method, str(status)
            )
        histogram = self._histograms.get((route, method))
        if histogram is None:
            histogram = self._histograms[route, method] = self.duration.labels(self.service, route, method)
        counter.inc()
        histogram.observe(duration_s)

    def db_pool(self, pool_size: int) -> DbPoolEvents:
        """The gauges and the wait histogram one worker's pool reports to (twinstack_db/pool.py)."""
        self.db_pool_limit.labels(self.service, "pool_size").set(pool_size)
        return DbPoolEvents(
            self.db_connections.labels(self.service, "open"),
            self.db_connections.labels(self.service, "checked_out"),
            self._db_wait,
        )

    def exposition(self) -> tuple[bytes, str]:
        """Text exposition: every worker's values when multiprocess, else this app's own."""
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            registry = CollectorRegistry()
            MultiProcessCollector(registry)
        else:
            registry = self.registry
        return generate_latest(registry), CONTENT_TYPE_LATEST


class DbPoolEvents:
    """twinstack_db.pool.PoolEvents on the gauges: open and checked-out connections, and the
    time each checkout waited."""

    def __init__(self, open_: Gauge, checked_out: Gauge, wait: Histogram) -> None:
        self._open, self._checked_out, self._wait = open_, checked_out, wait

    def opened(self) -> None:
        self._open.inc()

    def closed(self) -> None:
        self._open.dec()

    def checked_out(self, waited_s: float) -> None:
        self._checked_out.inc()
        self._wait.observe(waited_s)

    def checked_in(self) -> None:
        self._checked_out.dec()


def prepare_multiprocess_dir(path: str) -> None:
    """Empty the directory at master start: values left by a previous run would be summed in."""
    os.makedirs(path, exist_ok=True)
    for name in os.listdir(path):
        if name.endswith(".db"):
            os.remove(os.path.join(path, name))
