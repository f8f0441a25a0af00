"""Locust against the real stack: the smoke profile passes its gate, a deliberately impossible
threshold fails it, and distributed mode reports the same way."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support import HALVES, PREFIXES, ROOT, free_port, sessions_opened

pytestmark = [pytest.mark.integration, pytest.mark.alone]  # Locust's gates judge latency


def run_profile(stack, reports: Path, *args: str) -> tuple[int, dict, str]:
    """Run a profile as a user would; on a hang, end the whole process group (master and
    forked workers), never leave it running."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "loadtest", *args, "--host", stack.base_url, "--reports", str(reports)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        output, _ = proc.communicate(timeout=90)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        output, _ = proc.communicate()
        pytest.fail(f"load test did not finish:\n{output[-3000:]}")
    verdicts = sorted(reports.glob("*-verdict.json"))
    assert verdicts, output
    return proc.returncode, json.loads(verdicts[-1].read_text()), output


def test_smoke_profile_passes_its_gate(stack, tmp_path):
    code, verdict, output = run_profile(stack, tmp_path, "smoke")
    assert code == 0, output
    assert verdict["passed"] and verdict["profile"] == "smoke"
    checks = {c["name"]: c for c in verdict["checks"]}
    assert checks["requests"]["measured"] > 0
    assert checks["failure ratio"]["measured"] == 0
    # A check for each half this project has, and none for a half it has not (its users stop).
    assert {f"p95 {half.prefix}" for half in HALVES} | {"p95 static"} == set(checks) - {"requests", "failure ratio"}
    assert verdict["cpu_peak_pct"]  # the generator's own CPU is on record
    assert "VERDICT: PASS" in output
    assert list(tmp_path.glob("locust-smoke-*.html")) and list(tmp_path.glob("locust-smoke-*_stats.csv"))


def test_an_impossible_threshold_fails_the_gate(stack, tmp_path):
    half = HALVES[0].prefix
    code, verdict, output = run_profile(stack, tmp_path, "smoke", "--run-time", "4s", f"--max-p95-{half}-ms", "0.001")
    assert code == 1, output
    assert not verdict["passed"]
    assert [c["name"] for c in verdict["checks"] if not c["ok"]] == [f"p95 {half}"]
    assert "VERDICT: FAIL" in output


def test_distributed_mode_reports_the_same_way(stack, tmp_path):
    port = str(free_port())  # not Locust's default 5557, which a user's own run may hold
    code, verdict, output = run_profile(
        stack,
        tmp_path,
        "smoke",
        "--workers",
        "2",
        "--run-time",
        "5s",
        "--master-bind-port",
        port,
        "--master-port",
        port,
    )
    assert code == 0, output
    assert "2 workers connected" in output
    assert sum(1 for label in verdict["cpu_peak_pct"] if label.startswith("worker")) == 2
    assert {c["name"]: c for c in verdict["checks"]}["requests"]["measured"] > 0


def test_tags_select_one_workload(stack, tmp_path):
    code, _, output = run_profile(stack, tmp_path, "smoke", "--run-time", "3s", "--tags", "static")
    assert code == 0, output
    stats = next(tmp_path.glob("*_stats.csv")).read_text()
    assert "/static/style.css" in stats and "/async/" not in stats


def test_the_mixed_profile_opens_no_database_session_once_warm(stack, tmp_path):
    """The default profile at its documented user count (loadtest/profiles/mixed.conf), for a
    short run: PostgreSQL counts no new session between its warm-up and its end."""
    url = json.loads(stack.native("env").stdout)["TWINSTACK_DATABASE_URL"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "loadtest", "mixed", "--run-time", "14s", "--host", stack.base_url,
         "--reports", str(tmp_path)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )  # fmt: skip
    try:
        time.sleep(6)  # users spawned (10 a second) and every route visited
        before = sessions_opened(url)
        time.sleep(6)
        after = sessions_opened(url)
        output, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    stats = next(tmp_path.glob("*_stats.csv")).read_text()
    for route in (f"{prefix}{path}" for prefix in PREFIXES for path in ("/orders/{order_id}", "/orders")):
        assert f",{route}," in stats, output[-3000:]  # the run did touch the database
    assert after - before == 1, f"{after - before - 1} sessions opened under the mixed profile"
