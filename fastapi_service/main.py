"""App factory: gunicorn calls ``fastapi_service.main:create_app()``. Only wiring lives here."""

from __future__ import annotations

import asyncio
import multiprocessing
from collections.abc import AsyncIterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI

from twinstack_contract.jobs import JobStore
from twinstack_contract.metrics import Metrics

from . import errors
from .middleware import ForwardedMiddleware
from .observability import ObservabilityMiddleware, monitor_loop_lag
from .routers import health, inspect, jobs, lab, metrics, orders, workloads, ws
from .settings import Settings


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        pool: list[ProcessPoolExecutor] = []

        def process_pool() -> ProcessPoolExecutor:
            # Created on first use: most workers never need it. "spawn", because forking a
            # process that runs an event loop and threads copies state it cannot use.
            if not pool:
                ctx = multiprocessing.get_context("spawn")
                pool.append(ProcessPoolExecutor(settings.process_pool_workers, mp_context=ctx))
            return pool[0]

        limits = httpx.Limits(max_connections=1000, max_keepalive_connections=100)
        async with httpx.AsyncClient(
            base_url=settings.downstream_url, timeout=settings.downstream_timeout_s, limits=limits
        ) as client:
            app.state.downstream = client
            app.state.jobs = JobStore(settings.state_dir / "async-jobs")
            app.state.process_pool = process_pool
            app.state.started = True
            lag_monitor = asyncio.create_task(monitor_loop_lag(app.state.metrics))
            try:
                yield
            finally:
                app.state.started = False
                lag_monitor.cancel()
                for p in pool:
                    p.shutdown(wait=True, cancel_futures=True)

    app = FastAPI(
        title="twinstack async service",
        summary="FastAPI on gunicorn + uvicorn workers, behind nginx at /async/.",
        version="0.1.0",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.started = False
    app.state.metrics = Metrics("fastapi")
    errors.install(app)
    for module in (health, workloads, orders, jobs, inspect, lab, ws, metrics):
        app.include_router(module.router)
    # Added last = outermost: ForwardedMiddleware sets the request id and client first.
    app.add_middleware(ObservabilityMiddleware, metrics=app.state.metrics)
    app.add_middleware(ForwardedMiddleware, trusted=settings.trusted_proxies)
    return app
