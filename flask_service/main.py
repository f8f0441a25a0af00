"""App factory: gunicorn calls ``flask_service.main:create_app()``. Only wiring lives here."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx
from flask import Flask

from twinstack_runtime.jobs import JobRunner, JobStore

from . import errors, observability
from .blueprints import health, inspect, jobs, orders, workloads
from .proxy import TrustedProxyFix
from .settings import Settings


def create_app(settings: Settings | None = None, test_config: Mapping[str, Any] | None = None) -> Flask:
    settings = settings or Settings()
    app = Flask(__name__)
    # Defaults, then FLASK_* from the environment, then the test mapping (Flask tutorial order).
    app.json.sort_keys = False  # type: ignore[attr-defined]  # keep the models' field order
    app.config.from_mapping(
        MAX_CONTENT_LENGTH=64 * 1024,  # same limit as nginx client_max_body_size
        # No OPTIONS answered by Flask itself (200, an HTML content type, an empty body): nginx
        # answers OPTIONS (the CORS preflight) for every API path, and the async service has
        # none, so here too it is a 405 JSON whose Allow names the same methods as FastAPI's.
        PROVIDE_AUTOMATIC_OPTIONS=False,
    )
    app.config.from_prefixed_env()
    if test_config:
        app.config.from_mapping(test_config)
    app.extensions["settings"] = settings
    app.extensions["downstream"] = httpx.Client(base_url=settings.downstream_url, timeout=settings.downstream_timeout_s)
    store = JobStore(settings.state_dir / "sync-jobs", settings.job_retention_s)
    app.extensions["jobs"] = JobRunner(store, settings.job_threads, settings.job_capacity)

    errors.install(app)
    observability.install(app, settings.metrics, settings.access_log)
    for module in (health, workloads, orders, jobs, inspect):
        app.register_blueprint(module.bp)
    app.wsgi_app = TrustedProxyFix(app.wsgi_app, settings.trusted_proxies, settings.request_id)  # type: ignore[method-assign]
    return app


def shutdown(app: Flask) -> None:
    """Release what create_app opened: stop the job threads (bounded, see JobRunner.stop),
    close downstream connections. gunicorn calls it from worker_exit (gunicorn.conf.py); tests
    call it after each app."""
    app.extensions["jobs"].stop(app.extensions["settings"].job_stop_grace_s)
    app.extensions["downstream"].close()
