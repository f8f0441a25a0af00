"""The lab's command line when it does not run to its report: make bench-compare without two
reports, and the lab stopped by Ctrl-C or SIGTERM while it measures (apart from the tiny run in
test_lab_run.py, so the two run side by side)."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import sys

import pytest

from tests.support import ROOT, require_binary

pytestmark = pytest.mark.integration


def test_bench_compare_without_two_reports_explains_its_usage():
    result = subprocess.run(["make", "-s", "bench-compare"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 2
    assert "usage: make bench-compare" in result.stderr


@pytest.mark.parametrize("stop", ["SIGINT", "SIGTERM"])
def test_ctrl_c_stops_every_server_and_generator_and_writes_no_report(tmp_path, nginx_bin, stop):
    """Ctrl-C (SIGINT), or SIGTERM, while the lab measures: every server and load generator
    it started is gone, and no report is written."""
    import signal
    import time

    import psutil

    require_binary(shutil.which("wrk"), "wrk")
    require_binary(shutil.which("pgbouncer") or shutil.which("pgbouncer", path="/usr/sbin"), "pgbouncer")
    out = tmp_path / "report"
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench", "run", "--mode", "tiny", "--out", str(out)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lab = psutil.Process(proc.pid)
    try:
        # Wait until the first curve is being measured: the stack runs and wrk is loading it.
        for line in proc.stdout:
            if "curve:" in line:
                break
        deadline = time.monotonic() + 30
        while True:  # polled: the servers it started are its children
            started = lab.children(recursive=True)
            commands = []
            for child in started:
                with contextlib.suppress(psutil.Error):  # one may exit while listed
                    commands.append(" ".join(child.cmdline()))
            if any("gunicorn" in c for c in commands) and any("nginx" in c for c in commands):
                break
            assert time.monotonic() < deadline, commands
            time.sleep(0.1)
        proc.send_signal(getattr(signal, stop))
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130
    assert "interrupted: no report written." in stderr and "Traceback" not in stderr
    assert not (out / "results.json").exists()
    _, alive = psutil.wait_procs(started, timeout=10)
    assert not alive, [" ".join(p.cmdline()) for p in alive]
