"""The Flask service's resources as Flask extensions (the ``init_app`` pattern): each is set
up on the app it is given and found through ``current_app``, so the app factory, the test
client and gunicorn all hold them the same way.

A WSGI app is never told that its process ends, so closing is the extension's ``close(app)``,
called by :func:`flask_service.main.shutdown`: from gunicorn's ``worker_exit`` hook in a
deployment, after each app in the tests.
"""

from __future__ import annotations

import httpx
from flask import Flask, current_app

from twinstack_db.session import Database
from twinstack_runtime.jobs import JobRunner, JobStore

from .settings import Settings


class Downstream:
    """One pooled HTTP client per app (per worker process) for the downstream service."""

    name = "downstream"

    def init_app(self, app: Flask, settings: Settings) -> None:
        app.extensions[self.name] = httpx.Client(
            base_url=settings.downstream_url, timeout=settings.downstream_timeout_s
        )

    @property
    def client(self) -> httpx.Client:
        return current_app.extensions[self.name]

    def close(self, app: Flask) -> None:
        app.extensions[self.name].close()


class Jobs:
    """The worker's job threads, recording jobs through the worker's database pool."""

    name = "jobs"

    def init_app(self, app: Flask, settings: Settings) -> None:
        store = JobStore(app.extensions[db.name].run, settings.job_retention_s)
        app.extensions[self.name] = JobRunner(store, settings.job_threads, settings.job_capacity)

    @property
    def runner(self) -> JobRunner:
        return current_app.extensions[self.name]

    def close(self, app: Flask) -> None:
        """Queued jobs are failed at once, running ones get TWINSTACK_JOB_STOP_GRACE_S."""
        app.extensions[self.name].stop(app.extensions["settings"].job_stop_grace_s)


class Db:
    """The worker's database pool. create_app runs in each worker, after gunicorn forked it
    (no preload_app), so each worker opens its own connections; see twinstack_db/pool.py for
    what preload_app would break and the guard against it."""

    name = "db"

    def init_app(self, app: Flask, settings: Settings) -> None:
        sizes = settings.db_pool
        events = app.extensions["metrics"].db_pool(sizes.pool_size)
        app.extensions[self.name] = Database.open(settings, sizes, "twinstack-sync", events)

    @property
    def database(self) -> Database:
        return current_app.extensions[self.name]

    def close(self, app: Flask) -> None:
        app.extensions[self.name].close()


downstream = Downstream()
db = Db()
jobs = Jobs()
# In the order they are set up (the jobs record themselves through the database); closed in
# the reverse order: the jobs first, while they can still record how they ended.
EXTENSIONS = (downstream, db, jobs)
