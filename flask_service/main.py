"""App factory: gunicorn calls ``flask_service.main:create_app()``. Only wiring lives here."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import Flask

from twinstack_contract.limits import MAX_BODY_BYTES

from . import errors, observability
from .blueprints import health, inspect, jobs, orders, workloads
from .extensions import EXTENSIONS
from .proxy import TrustedProxyFix
from .settings import Settings


def create_app(settings: Settings | None = None, test_config: Mapping[str, Any] | None = None) -> Flask:
    settings = settings or Settings()
    app = Flask(__name__)
    # Defaults, then FLASK_* from the environment, then the test mapping (Flask tutorial order).
    app.json.sort_keys = False  # type: ignore[attr-defined]  # keep the models' field order
    app.config.from_mapping(
        MAX_CONTENT_LENGTH=MAX_BODY_BYTES,  # the contract's limit, nginx's client_max_body_size
        # No OPTIONS answered by Flask itself (200, an HTML content type, an empty body): nginx
        # answers OPTIONS (the CORS preflight) for every API path, and the async service has
        # none, so here too it is a 405 JSON whose Allow names the same methods as FastAPI's.
        PROVIDE_AUTOMATIC_OPTIONS=False,
    )
    app.config.from_prefixed_env()
    if test_config:
        app.config.from_mapping(test_config)
    app.extensions["settings"] = settings
    errors.install(app)
    observability.install(app, settings.metrics, settings.access_log)  # first: the pool reports to it
    for extension in EXTENSIONS:
        extension.init_app(app, settings)
    for module in (health, workloads, orders, jobs, inspect):
        app.register_blueprint(module.bp)
    app.wsgi_app = TrustedProxyFix(app.wsgi_app, settings.trusted_proxies, settings.request_id)  # type: ignore[method-assign]
    return app


def shutdown(app: Flask) -> None:
    """Release what create_app's extensions opened (flask_service/extensions.py): stop the job
    threads (bounded, see JobRunner.stop), close downstream connections. gunicorn calls it
    from worker_exit (gunicorn.conf.py); tests call it after each app."""
    for extension in reversed(EXTENSIONS):
        extension.close(app)
