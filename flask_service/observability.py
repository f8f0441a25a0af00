"""Per-request metrics, the access log line and Server-Timing for the WSGI app, and the
/metrics endpoint. The metric and field definitions are shared (twinstack_runtime)."""

from __future__ import annotations

import time

from flask import Blueprint, Flask, Response, current_app, g, request

from twinstack_contract.errors import ContractError
from twinstack_db.session import SQL_TIME
from twinstack_runtime.logs import log_request, server_timing
from twinstack_runtime.metrics import UNMATCHED, Metrics

bp = Blueprint("metrics", __name__)


@bp.get("/metrics")
def metrics() -> Response:
    """Every worker's metrics. nginx refuses /sync/metrics publicly; should a request still
    arrive through the public proxy (it carries the prefix), it gets a 404 here too."""
    if request.script_root:
        raise ContractError(404, "not_found", "Not Found")
    body, content_type = current_app.extensions["metrics"].exposition()
    return Response(body, content_type=content_type)


def install(app: Flask, record_metrics: bool = True, access_log: bool = True) -> None:
    """``Server-Timing`` on every response; the metrics and the access line unless switched off
    (the lab measures what each costs)."""
    metrics = Metrics("flask")
    app.extensions["metrics"] = metrics
    app.register_blueprint(bp)
    counted = metrics if record_metrics else None

    @app.before_request
    def start_timer() -> None:
        g.started = time.perf_counter()
        SQL_TIME.set(0.0)
        if counted is not None:
            counted.started()

    @app.after_request
    def record(response: Response) -> Response:
        duration = time.perf_counter() - g.started
        response.headers["Server-Timing"] = server_timing(duration, SQL_TIME.get())
        route = request.url_rule.rule if request.url_rule else UNMATCHED
        g.recorded = True
        if counted is not None:
            counted.finished(route, request.method, response.status_code, duration)
        if access_log:
            log_request(
                "flask",
                request.environ["twinstack.request_id"],
                request.method,
                request.script_root + request.path,
                route,
                response.status_code,
                duration,
                request.remote_addr,
            )
        return response

    @app.teardown_request
    def never_leave_in_flight(exc: BaseException | None) -> None:
        # after_request is skipped if a response could not be built at all.
        if counted is not None and "started" in g and not g.get("recorded"):
            counted.finished(UNMATCHED, request.method, 500, time.perf_counter() - g.started)
