"""App factory: gunicorn calls ``fastapi_service.main:create_app()``. Only wiring lives here."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

import httpx
from fastapi import FastAPI

from twinstack_db.session import AsyncDatabase
from twinstack_runtime.jobs import JobRunner, JobStore
from twinstack_runtime.metrics import Metrics

from . import docs, errors, flask_parity
from .flask_parity import BodyLimitMiddleware, HeadMiddleware
from .middleware import ForwardedMiddleware
from .observability import ObservabilityMiddleware, monitor_loop_lag
from .routers import health, inspect, jobs, metrics, orders, workloads, ws
from .settings import Settings


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Each resource is closed by the lifespan that opened it, in reverse order, even when a
        # later one fails to open: never through app.state, which a second lifespan of the
        # same app (a test's nested client) overwrites, leaving the first one's pool running.
        async with AsyncExitStack() as resources:
            limits = httpx.Limits(max_connections=1000, max_keepalive_connections=100)
            app.state.downstream = await resources.enter_async_context(
                httpx.AsyncClient(
                    base_url=settings.downstream_url, timeout=settings.downstream_timeout_s, limits=limits
                )
            )
            # The pool of this worker, made in its own event loop (twinstack_db/pool.py).
            sizes = settings.db_pool
            events = app.state.metrics.db_pool(sizes.pool_size)
            db = app.state.db = await AsyncDatabase.open(settings, sizes, "twinstack-async", events)
            resources.push_async_callback(db.close)
            # The routes await the pool; the job threads reach it through the loop (run_from_thread).
            jobs = app.state.jobs = JobRunner(
                JobStore(db.run_from_thread, settings.job_retention_s), settings.job_threads, settings.job_capacity
            )
            resources.push_async_callback(asyncio.to_thread, jobs.stop, settings.job_stop_grace_s)
            lag_monitor = asyncio.create_task(monitor_loop_lag(app.state.metrics))
            resources.callback(lag_monitor.cancel)
            app.state.started = True
            try:
                yield
            finally:
                app.state.started = False

    app = FastAPI(
        title="twinstack async service",
        summary="FastAPI on gunicorn + uvicorn workers, behind nginx at /async/.",
        version="0.1.0",
        lifespan=lifespan,
        # Served by docs.install from local assets, not FastAPI's CDN-backed pages.
        docs_url=None,
        redoc_url=None,
        # No redirect from /health/ to /health: a 404, as Flask answers (one contract), and no
        # Location built from a Host header behind the proxy.
        redirect_slashes=False,
        # FastAPI's own OpenTelemetry hooks, off: the app exports Prometheus metrics
        # (twinstack_runtime.metrics), and with the hooks on, every request looks up three
        # global OpenTelemetry providers even when none is configured. Turn them back on
        # (FastAPI's `telemetry` argument) where an OpenTelemetry SDK is installed.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.settings = settings
    app.state.started = False
    app.state.metrics = Metrics("fastapi")
    errors.install(app)
    # Starlette tries the routes in order, and FastAPI's included routers cost a few µs each to
    # try: the database routes, which real traffic hits most, come first; the docs, last.
    routers = [m.router for m in (orders, jobs, health, workloads, inspect, ws, metrics)]
    for router in routers:
        app.include_router(router)
    docs.install(app)
    app.state.route_methods = flask_parity.route_methods(routers)
    # Added last = outermost: ForwardedMiddleware sets the request id and client first.
    app.add_middleware(BodyLimitMiddleware)
    app.add_middleware(HeadMiddleware)
    app.add_middleware(
        ObservabilityMiddleware,
        metrics=app.state.metrics,
        record_metrics=settings.metrics,
        access_log=settings.access_log,
    )
    app.add_middleware(ForwardedMiddleware, trusted=settings.trusted_proxies, with_request_id=settings.request_id)
    return app
