"""flask_service/gunicorn.conf.py as gunicorn reads it."""

from __future__ import annotations

import pytest

from tests.support import load_conf
from twinstack_runtime.serving import usable_cpus


@pytest.mark.parametrize(("worker_class", "threads"), [("sync", 1), ("gthread", 8), ("gevent", 1)])
def test_flask_gunicorn_conf(monkeypatch, tmp_path, worker_class, threads):
    conf = load_conf(
        "flask_service",
        monkeypatch,
        tmp_path,
        TWINSTACK_SYNC_WORKER_CLASS=worker_class,
        TWINSTACK_SYNC_THREADS="8",
        TWINSTACK_SYNC_WORKERS="3",
    )
    assert conf["worker_class"] == worker_class
    assert conf["threads"] == threads
    assert conf["workers"] == 3


def test_the_sync_pool_listens_on_its_default_port_or_the_one_given(monkeypatch, tmp_path):
    monkeypatch.delenv("TWINSTACK_SYNC_PORT", raising=False)
    assert load_conf("flask_service", monkeypatch, tmp_path)["bind"] == ["127.0.0.1:8002"]
    assert load_conf("flask_service", monkeypatch, tmp_path, TWINSTACK_SYNC_PORT="9202")["bind"] == ["127.0.0.1:9202"]


def test_default_sync_workers(monkeypatch, tmp_path):
    monkeypatch.delenv("TWINSTACK_SYNC_WORKERS", raising=False)
    assert load_conf("flask_service", monkeypatch, tmp_path)["workers"] == 2 * usable_cpus() + 1
