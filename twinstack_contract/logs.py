"""Logs, the same for both services: JSON lines (python-json-logger) with one set of field
names, shared with nginx's access log format; every request leaves one access line carrying
nginx's request id. Kept apart from the metrics so importing it never loads prometheus-client
(gunicorn.conf.py imports this before it sets PROMETHEUS_MULTIPROC_DIR)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from pythonjsonlogger.json import JsonFormatter

# Shared field names: nginx's log_format twinstack_json uses the same ones.
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s %(process)d %(message)s"
LOG_RENAME = {"asctime": "time", "levelname": "level", "name": "logger", "process": "pid"}


class IsoJsonFormatter(JsonFormatter):
    """ISO 8601 times in UTC, like nginx's $time_iso8601 (with milliseconds)."""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return datetime.fromtimestamp(record.created, tz=UTC).isoformat(timespec="milliseconds")


def json_formatter() -> JsonFormatter:
    # The pid comes from each record (%(process)d): the formatter is built in the gunicorn
    # master and inherited by the workers.
    return IsoJsonFormatter(LOG_FORMAT, rename_fields=LOG_RENAME, json_ensure_ascii=False)


def logging_config(level: str = "INFO") -> dict:
    """A dictConfig for gunicorn's ``logconfig_dict``: its own loggers, uvicorn's and the
    apps', all as JSON lines on stderr (Docker collects it; natively supervisord files it)."""
    handler = {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}
    quiet = {"handlers": [], "propagate": False}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": "twinstack_contract.logs.json_formatter"}},
        "handlers": {"stderr": handler},
        "root": {"level": level.upper(), "handlers": ["stderr"]},
        "loggers": {
            "gunicorn.error": {"level": level.upper(), "handlers": ["stderr"], "propagate": False},
            # Replaced by the apps' own access lines (log_request), which know the request id,
            # the route and the duration; the servers' access logs know none of them.
            "gunicorn.access": quiet,
            "uvicorn.access": quiet,
            "uvicorn.error": {"level": level.upper(), "handlers": ["stderr"], "propagate": False},
        },
    }


access_log = logging.getLogger("twinstack.access")


def log_request(
    service: str,
    request_id: str,
    method: str,
    path: str,
    route: str,
    status: int,
    duration_s: float,
    client: str | None,
) -> None:
    access_log.info(
        "request",
        extra={
            "service": service,
            "request_id": request_id,
            "method": method,
            "path": path,
            "route": route,
            "status": status,
            "duration_ms": round(duration_s * 1000, 3),
            "client_ip": client,
        },
    )


def server_timing(duration_s: float) -> str:
    """``Server-Timing`` for browsers' devtools: the time spent in the app."""
    return f"app;dur={duration_s * 1000:.2f}"
