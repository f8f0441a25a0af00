"""The gate's judgement on synthetic statistics, and the stage parser."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from locust.env import Environment

from loadtest.gate import SATURATED_PCT, evaluate, render
from loadtest.locustfile import AsyncUser, StaticUser, SyncUser
from loadtest.shape import parse_stages


def options(**overrides) -> SimpleNamespace:
    base = {
        "profile": "test",
        "max_fail_ratio": 0.01,
        "max_p95_async_ms": 500.0,
        "max_p95_sync_ms": 1000.0,
        "max_p95_static_ms": 0.0,
    }
    return SimpleNamespace(**{**base, **overrides})


def stats(async_ms: int = 50, sync_ms: int = 300, failures: int = 0):
    env = Environment(user_classes=[AsyncUser, SyncUser, StaticUser])
    for _ in range(100):
        env.stats.log_request("GET", "/async/io", async_ms, 10)
        env.stats.log_request("GET", "/sync/io", sync_ms, 10)
        env.stats.log_request("GET", "/static/style.css", 2, 10)
    for _ in range(failures):
        env.stats.log_error("GET", "/sync/io", "boom")
    return env.stats


def test_pass_when_every_threshold_holds():
    verdict = evaluate(stats(), options(), {"locust": 20.0})
    assert verdict.passed
    assert {c.name for c in verdict.checks} == {"requests", "failure ratio", "p95 async", "p95 sync", "p95 static"}
    assert "VERDICT: PASS" in render(verdict)


def test_p95_over_the_limit_fails_that_backend_only():
    verdict = evaluate(stats(sync_ms=2000), options(), {})
    failed = [c.name for c in verdict.checks if not c.ok]
    assert failed == ["p95 sync"]
    assert "VERDICT: FAIL" in render(verdict)


def test_failure_ratio_over_the_limit_fails():
    verdict = evaluate(stats(failures=10), options(), {})  # 10 of 300 requests
    assert [c.name for c in verdict.checks if not c.ok] == ["failure ratio"]


def test_zero_limit_means_no_limit_and_no_requests_is_a_failure():
    env = Environment(user_classes=[AsyncUser])
    verdict = evaluate(env.stats, options(max_p95_async_ms=0.0), {})
    assert not verdict.passed
    assert [c.name for c in verdict.checks if not c.ok] == ["requests", "failure ratio"]


def test_saturated_generator_is_called_out():
    verdict = evaluate(stats(), options(), {"master": 12.0, "worker 1": SATURATED_PCT + 5})
    assert verdict.saturated
    assert "load generator saturated, numbers not trustworthy" in render(verdict)


def test_parse_stages():
    assert parse_stages("30s:10:5, 1m:20:2.5") == [(30, 10, 5.0), (60, 20, 2.5)]
    for bad in ("", "30s:10", "x:1:1"):
        with pytest.raises(ValueError):
            parse_stages(bad)
