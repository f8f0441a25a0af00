"""Logs, the same for both services: JSON lines (python-json-logger) with one set of field
names, shared with nginx's access log format; every request leaves one access line carrying
nginx's request id. Kept apart from the metrics so importing it never loads prometheus-client
(gunicorn.conf.py imports this before it sets PROMETHEUS_MULTIPROC_DIR).

Where the lines go is the runner's choice: stderr under Docker (the engine collects it), a
file of the pool's own natively (``TWINSTACK_ASYNC_LOG_FILE``, ``TWINSTACK_SYNC_LOG_FILE``),
so that no line passes through the supervisor's pipes. The file is written by
``BlockFileHandler`` (below): every process appends whole lines in blocks, and after a
rotation (logrotate renames the file) each one reopens the path before its next block.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import threading
import time
import weakref
from datetime import UTC, datetime
from pathlib import Path

import orjson
from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.orjson import OrjsonFormatter

# Shared field names: nginx's log_format twinstack_json uses the same ones.
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s %(process)d %(message)s"
LOG_RENAME = {"asctime": "time", "levelname": "level", "name": "logger", "process": "pid"}


# uvicorn adds an ANSI-coloured copy of some messages; the plain one is enough.
SKIPPED_ATTRS = (*RESERVED_ATTRS, "color_message")


# What no line of ours shows, the logging module need not find out for every record: the
# caller's file and line (a walk up the stack), the thread's and the process's names. The
# logging HOWTO, "Optimization", names these switches. The pid stays: every line has it.
logging._srcfile = None
logging.logThreads = False
logging.logMultiprocessing = False


class IsoJsonFormatter(OrjsonFormatter):
    """python-json-logger with its orjson backend; ISO 8601 times in UTC, like nginx's
    $time_iso8601 (with milliseconds).

    The access line (one per request, see log_request) is on every request's path, so it
    takes a short way to the same output: its fields arrive as one dict, serialised after the
    standard ones, instead of the library's walk over every attribute of the record. We
    measured that walk at about a third of the line's cost."""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return datetime.fromtimestamp(record.created, tz=UTC).isoformat(timespec="milliseconds")

    def format(self, record: logging.LogRecord) -> str:
        fields = record.__dict__.get(ACCESS_FIELDS)
        if fields is None or record.exc_info or record.stack_info:
            return super().format(record)
        line = {
            "time": self.formatTime(record),
            "level": record.levelname,
            "logger": record.name,
            "pid": record.process,
            "message": record.getMessage(),
            **fields,
        }
        return orjson.dumps(line, default=self.json_default).decode()


def json_formatter() -> OrjsonFormatter:
    # The pid comes from each record (%(process)d): the formatter is built in the gunicorn
    # master and inherited by the workers.
    return IsoJsonFormatter(LOG_FORMAT, rename_fields=LOG_RENAME, reserved_attrs=SKIPPED_ATTRS)


def logging_config(level: str = "INFO", log_file: Path | None = None) -> dict:
    """A dictConfig for gunicorn's ``logconfig_dict``: its own loggers, uvicorn's and the
    apps', all as JSON lines, to ``log_file`` when given (native mode), else to stderr."""
    if log_file is None:
        handler = {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}
    else:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        handler = {
            "class": "twinstack_runtime.logs.BlockFileHandler",
            "formatter": "json",
            "filename": str(log_file),
            "encoding": "utf-8",
        }
    quiet = {"handlers": [], "propagate": False}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": "twinstack_runtime.logs.json_formatter"}},
        "handlers": {"out": handler},
        "root": {"level": level.upper(), "handlers": ["out"]},
        "loggers": {
            "gunicorn.error": {"level": level.upper(), "handlers": ["out"], "propagate": False},
            # Replaced by the apps' own access lines (log_request), which know the request id,
            # the route and the duration; the servers' access logs know none of them.
            "gunicorn.access": quiet,
            "uvicorn.access": quiet,
            "uvicorn.error": {"level": level.upper(), "handlers": ["out"], "propagate": False},
        },
    }


class BlockFileHandler(logging.handlers.WatchedFileHandler):
    """logging's WatchedFileHandler (reopens the path after logrotate renamed the file), writing
    whole lines in blocks, as nginx writes its access log (``buffer=64k flush=1s``).

    Per line, the handler used to stat the path and make one write system call; under load
    that was a third of an access line's cost. Here lines wait in memory and leave in one
    ``write`` of whole lines once 64 KiB are pending or a second has passed (a thread of each
    process sees to the second when no new line comes), and on close (a worker's exit, a
    graceful stop). One write of whole lines to a file opened for appending lands in one piece,
    so the processes of a pool sharing the file never split each other's lines. The path is
    checked for a rotation before each block. A process killed outright loses its last
    second of lines, as nginx does; an error or worse is written at once."""

    BLOCK_BYTES = 64 * 1024
    FLUSH_S = 1.0

    def __init__(self, filename: str, mode: str = "a", encoding: str | None = None, delay: bool = False) -> None:
        super().__init__(filename, mode, encoding, delay)
        self._pending: list[str] = []
        self._pending_chars = 0
        self._since = time.monotonic()
        self._flusher = False  # this process's flusher thread runs (started with the first line)
        # gunicorn forks its workers from the master, which logs too: in a child, the lines
        # pending at the fork are the parent's to write, and no flusher runs yet. A weak
        # reference, so a closed handler is not kept alive by the hook.
        ref = weakref.ref(self)
        os.register_at_fork(after_in_child=lambda: (handler := ref()) is not None and handler._forked())

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record) + self.terminator
        except Exception:
            self.handleError(record)
            return
        if not self._flusher:
            self._flusher = True
            threading.Thread(target=self._flush_every_second, name="log-flush", daemon=True).start()
        self._pending.append(line)
        self._pending_chars += len(line)
        if (
            record.levelno >= logging.ERROR
            or self._pending_chars >= self.BLOCK_BYTES
            or time.monotonic() - self._since >= self.FLUSH_S
        ):
            self.flush()

    def _forked(self) -> None:
        self._pending.clear()
        self._pending_chars = 0
        self._flusher = False

    def _flush_every_second(self) -> None:
        while self.stream is not None or self._pending:
            time.sleep(self.FLUSH_S)
            if self._pending and time.monotonic() - self._since >= self.FLUSH_S:
                self.flush()

    def flush(self) -> None:
        with self.lock:  # the handler's own lock, reset in a forked child by logging itself
            self._since = time.monotonic()
            if not self._pending:
                return
            block = "".join(self._pending)
            self._pending.clear()
            self._pending_chars = 0
            self.reopenIfNeeded()
            if self.stream is None:
                self.stream = self._open()
            data = block.encode(self.stream.encoding)
            written = 0
            while written < len(data):  # a regular file takes it all at once; a full disk may not
                written += os.write(self.stream.fileno(), data[written:])

    def close(self) -> None:
        with self.lock:
            self.flush()
            super().close()


access_log = logging.getLogger("twinstack.access")
# The record attribute that carries an access line's fields (IsoJsonFormatter.format).
ACCESS_FIELDS = "twinstack_access"


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
    fields = {
        "service": service,
        "request_id": request_id,
        "method": method,
        "path": path,
        "route": route,
        "status": status,
        "duration_ms": round(duration_s * 1000, 3),
        "client_ip": client,
    }
    access_log.info("request", extra={ACCESS_FIELDS: fields})


def server_timing(duration_s: float, sql_s: float = 0.0) -> str:
    """``Server-Timing`` for browsers' devtools: the time spent in the app, and of it on the
    database (waiting for a pooled connection and running SQL) when the request used it."""
    timing = f"app;dur={duration_s * 1000:.2f}"
    return f"{timing}, sql;dur={sql_s * 1000:.2f}" if sql_s else timing
