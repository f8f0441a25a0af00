"""JSON logs and metrics, shared by both services."""

from __future__ import annotations

import json
import logging
import logging.config
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from twinstack_runtime.logs import ACCESS_FIELDS, BlockFileHandler, json_formatter, log_request, logging_config
from twinstack_runtime.metrics import Metrics


def test_json_lines_with_the_shared_field_names():
    record = logging.LogRecord("twinstack.access", logging.INFO, __file__, 1, "request", None, None)
    record.request_id = "abc123456789"
    line = json.loads(json_formatter().format(record))
    assert {"time", "level", "logger", "pid", "message", "request_id"} <= set(line)
    assert line["time"].endswith("+00:00") and "T" in line["time"]


def test_logging_config_is_a_valid_dictconfig():
    logging.config.dictConfig(logging_config("warning"))
    try:
        assert logging.getLogger("gunicorn.error").level == logging.WARNING
        assert logging.getLogger("uvicorn.access").handlers == []
    finally:
        logging.config.dictConfig({"version": 1, "disable_existing_loggers": False})


def test_access_line_fields(caplog):
    with caplog.at_level(logging.INFO, logger="twinstack.access"):
        log_request("flask", "rid-0001-abc", "GET", "/sync/io", "/io", 200, 0.0123, "127.0.0.1")
    line = json.loads(json_formatter().format(caplog.records[-1]))
    assert list(line) == [
        *("time", "level", "logger", "pid", "message", "service", "request_id", "method", "path", "route"),
        *("status", "duration_ms", "client_ip"),
    ]
    assert (line["service"], line["request_id"], line["route"], line["status"], line["duration_ms"]) == (
        "flask",
        "rid-0001-abc",
        "/io",
        200,
        12.3,
    )


def test_the_access_lines_short_way_writes_what_the_librarys_way_writes(caplog):
    """The access line skips python-json-logger's walk over the record (it is on every
    request's path): the same fields, in the same order, as any other line with extras."""
    with caplog.at_level(logging.INFO, logger="twinstack.access"):
        log_request("fastapi", "rid-0002-abc", "POST", "/async/orders", "/orders", 201, 0.5, None)
    fast = caplog.records[-1]
    fields = fast.__dict__[ACCESS_FIELDS]
    generic = logging.LogRecord(fast.name, fast.levelno, fast.pathname, fast.lineno, "request", None, None)
    generic.created, generic.process = fast.created, fast.process
    generic.__dict__.update(fields)
    formatter = json_formatter()
    assert formatter.format(fast) == formatter.format(generic)
    assert json.loads(formatter.format(fast))["client_ip"] is None


def test_a_uvicorn_colour_copy_of_a_message_is_not_logged():
    record = logging.LogRecord("uvicorn.error", logging.INFO, __file__, 1, "Started server process [%d]", (7,), None)
    record.color_message = "Started server process [\x1b[36m%d\x1b[0m]"
    line = json.loads(json_formatter().format(record))
    assert line["message"] == "Started server process [7]" and "color_message" not in line


def flush_root() -> None:
    for handler in logging.getLogger().handlers:
        handler.flush()


def test_logging_config_writes_to_a_file_that_is_reopened_after_rotation(tmp_path):
    """Native mode: each pool writes its own file; logrotate renames it, and the next block
    goes to a new file at the same path, never to the renamed one."""
    path = tmp_path / "logs" / "pool.log"
    logging.config.dictConfig(logging_config("info", path))
    try:
        log_request("fastapi", "rid-before-rotation", "GET", "/health", "/health", 200, 0.001, "127.0.0.1")
        flush_root()
        path.rename(tmp_path / "logs" / "pool.log.1")
        log_request("fastapi", "rid-after-rotation", "GET", "/health", "/health", 200, 0.001, "127.0.0.1")
        flush_root()
        assert "rid-before-rotation" in (tmp_path / "logs" / "pool.log.1").read_text()
        lines = [json.loads(line) for line in path.read_text().splitlines()]
        assert [line["request_id"] for line in lines] == ["rid-after-rotation"]
    finally:
        logging.config.dictConfig({"version": 1, "disable_existing_loggers": False})


@contextmanager
def block_logger(path: Path, name: str) -> Iterator[tuple[logging.Logger, BlockFileHandler]]:
    """A logger of its own writing through a BlockFileHandler to ``path``; closed after."""
    handler = BlockFileHandler(str(path))
    handler.setFormatter(json_formatter())
    log = logging.getLogger(name)
    log.addHandler(handler)
    log.propagate = False
    try:
        yield log, handler
    finally:
        log.removeHandler(handler)
        handler.close()


def test_a_block_is_written_within_a_second_without_another_line(tmp_path):
    """Lines wait in memory for a block, but never longer than the flush interval, even when
    no other line comes to push them out; an error is written at once; close writes the rest."""
    path = tmp_path / "pool.log"
    with block_logger(path, "test.block") as (log, _):
        log.warning("first")
        assert path.read_text() == ""  # pending
        deadline = time.monotonic() + 3 * BlockFileHandler.FLUSH_S
        while "first" not in path.read_text():
            assert time.monotonic() < deadline, "a pending line was not written within the interval"
            time.sleep(0.05)
        log.error("at once")
        assert "at once" in path.read_text()
        log.warning("last")
    assert [json.loads(line)["message"] for line in path.read_text().splitlines()] == ["first", "at once", "last"]


def test_a_forked_worker_writes_its_own_lines_and_never_its_parents_pending_ones(tmp_path):
    """gunicorn forks workers from the master, which logs too: a line pending in the master at
    the fork is written once (by the master), and each process's lines are whole."""
    path = tmp_path / "pool.log"
    with block_logger(path, "test.fork") as (log, handler):
        log.warning("master, before the fork")
        pid = os.fork()
        if pid == 0:  # the worker
            try:
                for n in range(2000):
                    log.warning("worker %d", n)
                handler.close()
            finally:
                os._exit(0)
        for n in range(2000):
            log.warning("master %d", n)
        assert os.waitpid(pid, 0)[1] == 0
    messages = [json.loads(line)["message"] for line in path.read_text().splitlines()]
    assert messages.count("master, before the fork") == 1
    assert sorted(m for m in messages if m.startswith("worker ")) == sorted(f"worker {n}" for n in range(2000))
    assert sum(m.startswith("master ") for m in messages) == 2000


def test_metrics_count_and_track_busy():
    m = Metrics("test")
    m.started()
    m.started()
    m.finished("/io", "GET", 200, 0.01)
    text = m.exposition()[0].decode()
    assert 'twinstack_requests_total{method="GET",route="/io",service="test",status="200"} 1.0' in text
    assert 'twinstack_requests_in_flight{service="test"} 1.0' in text
    assert 'twinstack_workers_busy{service="test"} 1.0' in text
    m.finished("/io", "GET", 200, 0.01)
    assert 'twinstack_workers_busy{service="test"} 0.0' in m.exposition()[0].decode()
