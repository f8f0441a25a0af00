"""The shared pieces: trust policy, settings parsing, worker sizing, the gunicorn configs."""

from __future__ import annotations

import os
from ipaddress import ip_network
from pathlib import Path

import pytest
from pydantic import ValidationError

from native.settings import deployed
from tests.support import load_conf
from twinstack_runtime import serving
from twinstack_runtime.proxy import clean_prefix, is_trusted, request_id
from twinstack_runtime.serving import AsyncPool, SyncPool, usable_cpus
from twinstack_runtime.settings import ServiceSettings

LOOPBACK = [ip_network("127.0.0.1/32"), ip_network("::1/128")]


@pytest.mark.parametrize(
    ("peer", "trusted"),
    [
        ("127.0.0.1", True),
        ("::1", True),
        ("127.0.0.2", False),
        ("10.0.0.1", False),
        ("testclient", False),
        (None, False),
    ],
)
def test_is_trusted(peer, trusted):
    assert is_trusted(peer, LOOPBACK) is trusted


def test_is_trusted_by_network():
    assert is_trusted("172.18.0.5", [ip_network("172.16.0.0/12")])


def test_request_id_kept_only_when_trusted_and_well_formed():
    assert request_id("abcdef123456", trusted=True) == "abcdef123456"
    assert request_id("abcdef123456", trusted=False) != "abcdef123456"
    for bad in ("short", "has space 12345", "x" * 129, "new\nline12345"):
        assert request_id(bad, trusted=True) != bad
    assert len(request_id(None, trusted=True)) == 32


@pytest.mark.parametrize(
    ("value", "expected"), [("/async", "/async"), ("/a/b-c_d.e", "/a/b-c_d.e"), ("/..", ""), ("", "")]
)
def test_clean_prefix(value, expected):
    assert clean_prefix(value) == expected


def test_trusted_proxies_from_environment(monkeypatch):
    monkeypatch.setenv("TWINSTACK_TRUSTED_PROXIES", "127.0.0.1, 172.16.0.0/12")
    assert ServiceSettings().trusted_proxies == [ip_network("127.0.0.1/32"), ip_network("172.16.0.0/12")]


def test_bad_trusted_proxy_fails_fast(monkeypatch):
    monkeypatch.setenv("TWINSTACK_TRUSTED_PROXIES", "not-an-ip")
    with pytest.raises(ValueError):
        ServiceSettings()


def test_usable_cpus_follows_affinity():
    assert usable_cpus() == len(os.sched_getaffinity(0))


def test_usable_cpus_capped_by_cgroup_quota(monkeypatch, tmp_path):
    cpu_max = tmp_path / "cpu.max"
    cpu_max.write_text("150000 100000\n")  # --cpus=1.5
    real_path = serving.Path
    monkeypatch.setattr(serving, "Path", lambda p: cpu_max if p == "/sys/fs/cgroup/cpu.max" else real_path(p))
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    assert usable_cpus() == 2
    cpu_max.write_text("max 100000\n")
    assert usable_cpus() == 4


@pytest.mark.parametrize(("limit", "cpus"), [("1", 1), ("3", 3), ("16", 4)])
def test_a_cpu_limit_given_by_the_orchestrator_sizes_both_pools(monkeypatch, limit, cpus):
    """Kubernetes hands a container its limits.cpu through the downward API
    (TWINSTACK_CPU_LIMIT); the worker counts follow it, never above the CPUs usable here."""
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    monkeypatch.setattr(serving, "Path", lambda p: Path("/nonexistent/cpu.max"))
    monkeypatch.setenv("TWINSTACK_CPU_LIMIT", limit)
    assert AsyncPool().worker_count() == cpus
    assert SyncPool().worker_count() == 2 * cpus + 1
    monkeypatch.setenv("TWINSTACK_SYNC_WORKERS", "7")  # an explicit count still wins
    assert SyncPool().worker_count() == 7


@pytest.mark.parametrize("limit", ["0", "-1", "two", "1.5"])
def test_a_cpu_limit_that_is_not_a_whole_positive_number_is_refused(monkeypatch, limit):
    monkeypatch.setenv("TWINSTACK_CPU_LIMIT", limit)
    with pytest.raises(ValidationError, match="TWINSTACK_CPU_LIMIT"):
        AsyncPool()


def test_pool_settings_reject_unknown_worker_class(monkeypatch):
    monkeypatch.setenv("TWINSTACK_SYNC_WORKER_CLASS", "eventlet")
    with pytest.raises(ValidationError):
        SyncPool()


def test_each_pool_has_its_own_metrics_directory_whatever_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", "/somewhere/shared")
    dirs = set()
    for half in deployed():
        (entry,) = load_conf(half.package, monkeypatch, tmp_path)["raw_env"]
        dirs.add(entry.split("=", 1)[1])
    assert len(dirs) == len(deployed()) and all(d.startswith(str(tmp_path)) for d in dirs)
    assert os.environ["PROMETHEUS_MULTIPROC_DIR"] == "/somewhere/shared"  # reading a conf changes nothing


def test_each_pool_has_its_own_control_socket(monkeypatch, tmp_path):
    sockets = {load_conf(half.package, monkeypatch, tmp_path)["control_socket"] for half in deployed()}
    assert len(sockets) == len(deployed())
    assert all(s.startswith(str(tmp_path)) for s in sockets)


def test_container_healthcheck(downstream_url, monkeypatch):
    from twinstack_runtime.healthcheck import main

    assert main([f"{downstream_url}/health"]) == 0
    assert main([f"{downstream_url}/no-such-path"]) == 1  # 404 is not healthy
    assert main(["http://127.0.0.1:9/health"]) == 1  # nothing listening
    monkeypatch.setenv("TWINSTACK_HEALTH_URL", f"{downstream_url}/health")
    assert main([]) == 0
    monkeypatch.delenv("TWINSTACK_HEALTH_URL")
    assert main([]) == 1


@pytest.mark.parametrize("service", [half.package for half in deployed()])
def test_each_worker_freezes_the_loaded_app_out_of_the_collectors_reach(monkeypatch, tmp_path, service):
    """post_worker_init (after the worker loaded the app): gc.freeze() and a first-generation
    threshold of 7 000, so a collection under load walks what requests made, not the app."""
    import gc

    conf = load_conf(service, monkeypatch, tmp_path)
    threshold = gc.get_threshold()
    try:
        conf["post_worker_init"](None)
        assert gc.get_freeze_count() > 0
        assert gc.get_threshold() == (7000, 10, 10)
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)


def test_the_recycling_default_keeps_a_worker_for_minutes_at_full_load(monkeypatch):
    """At about 6 000 requests a second per async worker on 2 CPUs, 10 000 recycled a worker
    every 2 s; the default must last minutes even at ten times that."""
    for var in ("TWINSTACK_ASYNC_MAX_REQUESTS", "TWINSTACK_SYNC_MAX_REQUESTS"):
        monkeypatch.delenv(var, raising=False)
    for pool in (serving.AsyncPool(), serving.SyncPool()):
        assert pool.max_requests - pool.max_requests_jitter >= 60 * 6_000 * 2
