"""fastapi_service/gunicorn.conf.py as gunicorn reads it."""

from __future__ import annotations

from tests.support import load_conf
from twinstack_runtime.serving import usable_cpus


def test_fastapi_gunicorn_conf(monkeypatch, tmp_path):
    conf = load_conf("fastapi_service", monkeypatch, tmp_path, TWINSTACK_ASYNC_PORT="9101")
    assert conf["worker_class"] == "fastapi_service.worker.Worker"
    assert conf["workers"] == usable_cpus()
    assert conf["bind"] == ["127.0.0.1:9101"]
    assert conf["wsgi_app"] == "fastapi_service.main:create_app()"
    assert conf["forwarded_allow_ips"] == ""


def test_the_async_pool_listens_on_its_default_port(monkeypatch, tmp_path):
    monkeypatch.delenv("TWINSTACK_ASYNC_PORT", raising=False)
    assert load_conf("fastapi_service", monkeypatch, tmp_path)["bind"] == ["127.0.0.1:8001"]
