"""The lab's arithmetic and its error paths, without starting a server."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from bench import load as lab_load
from bench.compare import compare, load
from bench.experiments import FAILS, HOLDS, INCONCLUSIVE, decide, physical_limits
from bench.procs import CpuLayout, LabError, Server
from tests.support import ROOT, free_port


def run(throughput: float, cpu_ms: float = 0.0, generator_cores: float = 0.0, **extra) -> dict:
    return {
        "label": "x",
        "throughput_rps": throughput,
        "cpu_ms_per_request": cpu_ms,
        "generator_cpu_cores": generator_cores,
        "generator_saturated": False,
        "errors": 0,
        "requests": 100,
        "error_rate": 0.0,
        **extra,
    }


@pytest.mark.parametrize(
    ("settings", "concurrency", "little"),
    [
        ({"worker_class": "sync", "workers": 5}, 64, 100.0),  # workers / latency
        ({"worker_class": "sync", "workers": 5}, 2, 40.0),  # fewer requests than workers
        ({"worker_class": "gthread", "workers": 2, "threads": 4}, 64, 160.0),  # workers x threads / latency
        ({"worker_class": "gevent", "workers": 5, "worker_connections": 1000}, 64, 1280.0),
        ({"worker_class": "uvicorn_worker.UvicornWorker", "workers": 2}, 512, 10240.0),  # concurrency / latency
    ],
)
def test_littles_law_counts_the_slots_of_each_serving_model(settings, concurrency, little):
    limits = physical_limits(run(50.0), settings, concurrency, 0.05, cores=2, pinned=False)
    assert limits["little_rps"] == little
    assert limits["binding"] == "little"  # no CPU measured: the wait is the only limit


def test_the_utilisation_law_uses_measured_cpu_and_subtracts_the_generator():
    settings = {"worker_class": "sync", "workers": 5}
    # 10 ms of CPU a request; the generator used half a core of the two: 1.5 / 0.010 = 150 req/s.
    limits = physical_limits(run(120.0, cpu_ms=10.0, generator_cores=0.5), settings, 64, 0.0, cores=2, pinned=False)
    assert limits["cpu_rps"] == pytest.approx(150.0)
    assert limits["binding"] == "cpu"
    assert limits["ratio"] == pytest.approx(0.8)
    # Pinned apart, the generator's CPU is not the servers' to lose.
    pinned = physical_limits(run(120.0, cpu_ms=10.0, generator_cores=0.5), settings, 64, 0.0, cores=2, pinned=True)
    assert pinned["cpu_rps"] == pytest.approx(200.0)


def test_one_process_runs_python_on_one_core_at_a_time():
    # One worker on four cores: the GIL caps it at one core's worth of CPU-bound requests.
    limits = physical_limits(run(90.0, cpu_ms=10.0), {"workers": 1}, 16, 0.0, cores=4, pinned=True)
    assert limits["cpu_rps"] == pytest.approx(100.0)


def test_the_lower_limit_binds():
    settings = {"worker_class": "uvicorn_worker.UvicornWorker", "workers": 2}
    limits = physical_limits(run(3000.0, cpu_ms=0.5), settings, 512, 0.05, cores=2, pinned=True)
    assert limits["little_rps"] == 10240.0 and limits["cpu_rps"] == 4000.0
    assert limits["bound_rps"] == 4000.0 and limits["binding"] == "cpu"


def test_no_limit_measurable_gives_zero_not_an_error():
    limits = physical_limits(run(0.0), {"workers": 1}, 1, 0.0, cores=2, pinned=False)
    assert limits["bound_rps"] == 0.0 and limits["ratio"] == 0.0


def test_verdicts_are_inconclusive_when_the_run_cannot_tell():
    assert decide(True, "fine", [run(1.0)]) == (HOLDS, "fine")
    assert decide(False, "no", [run(1.0)]) == (FAILS, "no")
    saturated = run(1.0, generator_saturated=True)
    verdict, reason = decide(True, "fine", [saturated])
    assert verdict == INCONCLUSIVE and "generator saturated" in reason
    failing = run(1.0, errors=5, requests=100, error_rate=0.05)
    verdict, reason = decide(True, "fine", [failing])
    assert verdict == INCONCLUSIVE and "5 of 100 requests failed" in reason
    assert decide(True, "fine", [failing], expect_errors=True)[0] == HOLDS
    assert decide(True, "fine", [run(1.0, requests=1)])[0] == INCONCLUSIVE


def test_percentiles_are_nearest_rank():
    values = list(range(1, 101))
    assert lab_load.percentile(values, 50) == 50
    assert lab_load.percentile(values, 99) == 99
    assert lab_load.percentile([7.0], 99) == 7.0
    assert lab_load.percentile([], 50) == 0.0


def test_generator_and_servers_get_separate_cpus_only_when_there_are_enough(monkeypatch):
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0, 1})
    two = CpuLayout.detect()
    assert two.servers == two.generator == (0, 1) and not two.pinned
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: set(range(8)))
    eight = CpuLayout.detect()
    assert eight.pinned and eight.generator == (6, 7) and eight.servers == tuple(range(6))


def test_a_missing_wrk_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(lab_load.shutil, "which", lambda name: None)
    with pytest.raises(LabError, match="apt-get install wrk"):
        lab_load.wrk_binary()


def test_a_server_that_dies_while_starting_is_reported_with_its_log(tmp_path):
    code = "import sys; print('bad config: no such module'); sys.exit(3)"
    server = Server("broken", [sys.executable, "-c", code], free_port(), env={})
    server.start(tmp_path, cpus=[0])
    with pytest.raises(LabError, match="broken exited while starting") as exc:
        server.wait_ready(timeout_s=10)
    assert "bad config: no such module" in str(exc.value)


def test_a_server_that_never_answers_times_out_and_is_stopped(tmp_path):
    server = Server("mute", [sys.executable, "-c", "import time; time.sleep(60)"], free_port(), env={})
    server.start(tmp_path, cpus=[0])
    try:
        with pytest.raises(LabError, match="mute not ready after 1 s"):
            server.wait_ready(timeout_s=1)
    finally:
        server.stop(timeout_s=5)
    assert server.proc.poll() is not None


def test_compare_rejects_what_is_not_a_lab_report(tmp_path):
    with pytest.raises(LabError, match="no such file"):
        load(tmp_path / "missing")
    (tmp_path / "results.json").write_text("{not json")
    with pytest.raises(LabError, match="not a lab results file"):
        load(tmp_path)
    (tmp_path / "results.json").write_text(json.dumps({"schema": 99}))
    with pytest.raises(LabError, match="schema 1 expected"):
        load(tmp_path / "results.json")


def test_compare_prints_ratios_of_shared_runs_and_changed_verdicts():
    def report(rps: float, p99: float, verdict: str) -> dict:
        measured = run(rps, label="async /io", concurrency=8, latency_ms={"p99": p99})
        return {
            "schema": 1,
            "started": "t",
            "mode": {"name": "quick"},
            "machine": {"cpu_model": "cpu", "usable_cpus": 2},
            "ceiling": {**measured, "label": "nginx return 200"},
            "experiments": [{"claim": 2, "verdict": verdict, "ratio": rps / 100, "runs": [measured]}],
        }

    text = compare(report(100.0, 50.0, HOLDS), report(150.0, 25.0, FAILS))
    row = next(line for line in text.splitlines() if line.startswith("claim 2 | async /io | c=8"))
    assert "1.50x" in row and "0.50x" in row
    assert "<- changed" in text


def test_cli_errors_are_one_line_and_exit_1(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "bench", "compare", str(tmp_path / "a"), str(tmp_path / "b")],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1
    assert result.stderr.startswith("error: ") and "no such file" in result.stderr
    assert "Traceback" not in result.stderr
