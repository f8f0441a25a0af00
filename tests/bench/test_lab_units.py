"""The lab's arithmetic and its error paths, without starting a server."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import psutil
import pytest

from bench import load as lab_load
from bench.compare import compare, load
from bench.modes import MODES
from bench.procs import CpuLayout, LabError, Server, Servers
from bench.records import Background, ClaimRecord, Measured, PeerRow, StaticRun, Yardstick
from bench.verdicts import FAILS, HOLDS, INCONCLUSIVE, decide, physical_limits
from tests.bench import fakes
from tests.support import ROOT, free_port, require_binary


def run(throughput: float, cpu_ms: float = 0.0, generator_cores: float = 0.0, **extra):
    figures = {"label": "x", "requests": 100, **extra}
    return fakes.run(throughput, cpu_ms_per_request=cpu_ms, generator_cpu_cores=generator_cores, **figures)


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
    assert limits.little_rps == little
    assert limits.binding == "little"  # no CPU measured: the wait is the only limit


def test_the_utilisation_law_uses_measured_cpu_and_subtracts_the_generator():
    settings = {"worker_class": "sync", "workers": 5}
    # 10 ms of CPU a request; the generator used half a core of the two: 1.5 / 0.010 = 150 req/s.
    limits = physical_limits(run(120.0, cpu_ms=10.0, generator_cores=0.5), settings, 64, 0.0, cores=2, pinned=False)
    assert limits.cpu_rps == pytest.approx(150.0)
    assert limits.binding == "cpu"
    assert limits.ratio == pytest.approx(0.8)
    # Pinned apart, the generator's CPU is not the servers' to lose.
    pinned = physical_limits(run(120.0, cpu_ms=10.0, generator_cores=0.5), settings, 64, 0.0, cores=2, pinned=True)
    assert pinned.cpu_rps == pytest.approx(200.0)


def test_one_process_runs_python_on_one_core_at_a_time():
    # One worker on four cores: the GIL caps it at one core's worth of CPU-bound requests.
    limits = physical_limits(run(90.0, cpu_ms=10.0), {"workers": 1}, 16, 0.0, cores=4, pinned=True)
    assert limits.cpu_rps == pytest.approx(100.0)


def test_the_lower_limit_bounds_and_a_busy_cpu_binds():
    settings = {"worker_class": "uvicorn_worker.UvicornWorker", "workers": 2}
    busy = physical_limits(run(3000.0, cpu_ms=0.5, server_cpu_cores=1.9), settings, 512, 0.05, cores=2, pinned=True)
    assert busy.little_rps == 10240.0 and busy.cpu_rps == 4000.0
    assert busy.bound_rps == 4000.0 and busy.binding == "cpu"
    assert busy.little_ratio == pytest.approx(3000 / 10240, abs=1e-3) and busy.cpu_ratio == 0.75
    # The same figures with the CPU mostly idle: the wait, not the CPU, set the pace, and the
    # claim is judged against Little's law (where this run falls short).
    idle = physical_limits(run(3000.0, cpu_ms=0.5, server_cpu_cores=0.6), settings, 512, 0.05, cores=2, pinned=True)
    assert idle.bound_rps == 4000.0 and idle.binding == "little" and idle.utilisation == 0.3


def test_the_cpu_yardstick_is_the_cheapest_request_on_the_curve_not_this_runs_own():
    # At c=64 a request cost 12.5 ms of CPU; at best (c=1) it cost 10 ms. The limit is set by
    # the 10 ms, so the rise in cost shows as a shortfall (0.8), not as a moved limit (1.0).
    settings = {"worker_class": "sync", "workers": 5}
    own = run(160.0, cpu_ms=12.5, server_cpu_cores=2.0)
    limits = physical_limits(own, settings, 64, 0.0, cores=2, pinned=True, cpu_ms_ref=10.0)
    assert limits.cpu_rps == pytest.approx(200.0) and limits.cpu_ratio == pytest.approx(0.8)
    assert limits.cpu_cost_rise == pytest.approx(1.25) and limits.cpu_ms_per_request_ref == 10.0
    assert physical_limits(own, settings, 64, 0.0, cores=2, pinned=True).cpu_ratio == pytest.approx(1.0)


def test_no_limit_measurable_gives_zero_not_an_error():
    limits = physical_limits(run(0.0), {"workers": 1}, 1, 0.0, cores=2, pinned=False)
    assert limits.bound_rps == 0.0 and limits.ratio == 0.0


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
    verdict, reason = decide(True, "fine", [run(1.0, settled=False)])
    assert verdict == INCONCLUSIVE and "still busy from the previous run" in reason
    side = Background(url="/anti", concurrency=1, requests=3, errors=1, latency_ms_p50=1.0)
    verdict, reason = decide(True, "fine", [run(1.0, background=side)])
    assert verdict == INCONCLUSIVE and "interfering load" in reason and "1 errors" in reason
    assert decide(True, "fine", [run(1.0, background=side.model_copy(update={"errors": 0}))])[0] == HOLDS


class FakeSampler:
    wall_s, box_busy_s, peak_rss, peak_pss, idle_pss = 10.0, 20.0, 2**20, 2**20, 2**19

    def __init__(self, cpu_s: float) -> None:
        self.cpu_s = cpu_s
        self.cpu_s_by_server = {"pool": cpu_s}


def measured(server_cpu_s: float, generator_cpu_s: float, shared: bool, **extra):
    figures = {
        "label": "x", "tool": "wrk", "url": "http://127.0.0.1:1/", "concurrency": 64, "duration_s": 10.0,
        "requests": 1000, "errors": 0, "latency_ms": {"p50": 1.0, "p95": 1.0, "p99": 1.0, "mean": 1.0, "max": 1.0},
        "sampler": FakeSampler(server_cpu_s),
        "generator_cpu_s": generator_cpu_s, "generator_cores": 2, "total_cpus": 2, "shared": shared,
        "settled": (0.1, True), "time_bounded": True, **extra,
    }  # fmt: skip
    return lab_load.record(**figures)


def test_a_generator_sharing_the_cpus_is_saturated_when_it_took_what_the_servers_left():
    # Two wrk threads on two shared CPUs: the servers used 1.2 cores, the generator the 0.8 left.
    assert measured(12.0, 8.0, shared=True).generator_saturated
    # The same generator load with CPUs of its own (two) is far from saturated.
    assert not measured(12.0, 8.0, shared=False).generator_saturated
    # Sharing, but the box had room to spare: not saturated.
    assert not measured(6.0, 4.0, shared=True).generator_saturated


def test_a_run_counts_only_good_responses_and_marks_censored_latencies():
    run_ = measured(1.0, 1.0, shared=False, errors=100, answered=900)
    assert run_.throughput_rps == 90.0 and run_.error_rate == 0.1
    assert not run_.latency_censored  # 64 in flight at 90 req/s: 0.7 s each, a run of 10 s
    assert measured(1.0, 1.0, shared=False, concurrency=512, requests=100).latency_censored
    # A client that waits for every answer (claim 1's waves, the jobs) has nothing censored.
    assert not measured(1.0, 1.0, shared=False, concurrency=512, requests=100, time_bounded=False).latency_censored
    assert run_.server_pss_idle_mb == 0.5 and run_.settled is True


def test_held_concurrency_is_the_peak_overlap_of_requests():
    assert lab_load.peak_overlap([]) == 0
    assert lab_load.peak_overlap([(0, 2), (1, 3), (1.5, 2.5)]) == 3
    # One after another, even touching, never overlaps.
    assert lab_load.peak_overlap([(0, 1), (1, 2), (2, 3)]) == 1


def test_held_concurrency_does_not_count_requests_queued_behind_another_wait():
    wait = 2.0
    # 2000 requests sent at once, served side by side, the last answered late by the CPU of
    # the others (2.8 s): all 2000 held.
    side_by_side = [(i * 1e-5, 2.0 + i * 4e-4) for i in range(2000)]
    assert lab_load.held_at_once(side_by_side, wait) == 2000
    # Five slots: five at a time, each batch behind the previous one's wait. Little's law
    # would say 1000 (sum of latencies / elapsed); the server held five.
    queued = [(0.0, wait * (1 + i // 5)) for i in range(2000)]
    assert lab_load.held_at_once(queued, wait) == 5


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


def test_stopping_a_server_kills_what_is_left_of_its_group_when_the_leader_is_gone(tmp_path):
    # The leader starts a child in its process group, then exits: a dead gunicorn master
    # with a worker still holding the port.
    code = (
        "import subprocess, sys; "
        "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); print(p.pid, flush=True)"
    )
    server = Server("orphaning", [sys.executable, "-c", code], free_port(), env={})
    server.start(tmp_path, cpus=[0])
    server.proc.wait(10)
    child = psutil.Process(int(server.log_path.read_text().split()[0]))
    assert child.is_running()
    server.stop(timeout_s=5)
    child.wait(5)
    assert not child.is_running()


def test_a_server_that_died_is_started_again(tmp_path):
    port = free_port()
    web = Server("web", [sys.executable, "-m", "http.server", "-b", "127.0.0.1", str(port)], port, {}, health_path="/")
    servers = Servers(tmp_path, CpuLayout(servers=(0,), generator=(0,)))
    try:
        servers.start(web)
        first = web.proc.pid
        servers.start(web)  # running: left alone
        assert web.proc.pid == first
        web.proc.kill()
        web.proc.wait()
        servers.start(web)
        assert web.proc.pid != first and web.proc.poll() is None
    finally:
        servers.stop_all()


def test_a_paced_generator_sends_about_its_rate_however_fast_the_server_answers(tmp_path):
    """The tiny mode's pacing (make test runs it beside the rest of the suite): wrk's connections
    wait between requests, about pace_rps a second in all, where unpaced wrk sends hundreds."""
    require_binary(shutil.which("wrk"), "wrk")
    port = free_port()
    web = Server("web", [sys.executable, "-m", "http.server", "-b", "127.0.0.1", str(port)], port, {}, health_path="/")
    servers = Servers(tmp_path, CpuLayout(servers=(0,), generator=(0,)))
    try:
        servers.start(web)
        paced = lab_load.Generator([0], 1, print, shared=True, scratch=tmp_path, out=tmp_path, pace_rps=20)
        summary, _ = paced._finish_wrk(paced._start_wrk(f"{web.base_url}/", 4, 2))
        assert 0 < summary["requests"] <= 2 * 20 * 2, summary  # twice the pace over 2 s: never reached
        assert summary["status"] == 0
    finally:
        servers.stop_all()


def test_a_stop_signal_while_a_server_starts_still_stops_that_server(tmp_path, monkeypatch):
    """SIGTERM (the lab's handler raises KeyboardInterrupt) arriving while Popen runs, after the
    fork: it is held until the process is recorded, then raised, so the lab's stop_all stops
    the server. Sent from the child before its exec, it always lands inside Popen."""
    from bench import procs

    pin = procs._pinned

    def pin_then_signal_the_lab(cpus):
        pinned = pin(cpus)

        def child() -> None:
            pinned()
            os.kill(os.getppid(), signal.SIGTERM)

        return child

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(procs, "_pinned", pin_then_signal_the_lab)
    port = free_port()
    web = Server("web", [sys.executable, "-m", "http.server", "-b", "127.0.0.1", str(port)], port, {}, health_path="/")
    servers = Servers(tmp_path, CpuLayout(servers=(0,), generator=(0,)))
    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        with pytest.raises(KeyboardInterrupt):
            servers.start_each(web)
        assert signal.getsignal(signal.SIGTERM) is interrupt  # the lab's handler is back
    finally:
        signal.signal(signal.SIGTERM, previous)
    try:
        assert "web" in servers.running and web.proc is not None, "the server started but the lab lost it"
        servers.stop_all()
        assert web.proc.poll() is not None
    finally:  # whatever this test left behind (a lost server, on a build with the bug)
        for child in psutil.Process().children(recursive=True):
            if f"127.0.0.1 {port}" in " ".join(child.cmdline()):
                child.kill()


def test_servers_that_fail_to_start_are_reported_by_name_while_the_others_run(tmp_path):
    port = free_port()
    web = Server("web", [sys.executable, "-m", "http.server", "-b", "127.0.0.1", str(port)], port, {}, health_path="/")
    crash = Server("crash", [sys.executable, "-c", "raise SystemExit(3)"], free_port(), {})
    missing = Server("missing", [str(tmp_path / "no-such-server")], free_port(), {})
    servers = Servers(tmp_path, CpuLayout(servers=(0,), generator=(0,)))
    try:
        errors = servers.start_each(crash, web, missing)
        assert set(errors) == {"crash", "missing"}
        assert "crash exited while starting" in str(errors["crash"])
        assert "missing could not start" in str(errors["missing"])
        assert set(servers.running) == {"web"} and web.proc.poll() is None
        pid = web.proc.pid
        assert servers.start_each(web) == {} and web.proc.pid == pid  # running: left alone, not started twice
    finally:
        servers.stop_all()


def test_an_experiment_that_crashes_is_inconclusive_and_the_run_goes_on():
    from bench.registry import Experiment, Phase

    lab = fakes.FakeLab()

    def broken(lab) -> ClaimRecord:
        raise LabError("sync pool exited while starting")

    stall = Experiment("claims-3-9", "stall", broken, claims=(3, 9)).execute(lab, {})
    assert [e.claim for e in stall] == [3, 9]
    for e in stall:
        assert e.verdict == INCONCLUSIVE and "sync pool exited while starting" in e.reason
        assert e.runs == [] and e.reason == lab.failures[0]
    # A section that crashes is the section's default, whatever it is.
    assert Experiment("peers", "peers", broken, phase=Phase.EDGE).execute(lab, {}) == fakes.results().peers
    assert Experiment("ceiling", "ceiling", broken, phase=Phase.BASELINE).execute(lab, {}) is None
    assert lab.failures == [
        "claim 3/9 failed: sync pool exited while starting",
        "peers failed: sync pool exited while starting",
        "ceiling failed: sync pool exited while starting",
    ]


def test_an_experiment_returning_what_it_did_not_declare_is_a_failure_not_a_bad_results_json():
    from bench.registry import Experiment, Phase
    from bench.verdicts import unmeasured

    lab = fakes.FakeLab()
    ok = unmeasured(8, "canned")
    assert Experiment("claim-8", "8", lambda lab: ok, claims=(8,)).execute(lab, {}) == [ok]
    wrong = Experiment("claim-10", "10", lambda lab: ok, claims=(10,)).execute(lab, {})
    assert wrong[0].claim == 10 and "not (10,)" in wrong[0].reason
    # A section is checked against its field of results.json: a list of runs is no ceiling.
    assert Experiment("ceiling", "c", lambda lab: [fakes.run()], phase=Phase.BASELINE).execute(lab, {}) is None
    assert "ceiling failed" in lab.failures[-1]
    # What an experiment needs is handed to it, in order.
    seen = []
    Experiment("static", "s", lambda lab, a, b: seen.extend([a, b]) or [], needs=("curves", "ceiling")).execute(
        lab, {"curves": "C", "ceiling": "R"}
    )
    assert seen == ["C", "R"]


def test_compare_rejects_what_is_not_a_lab_report(tmp_path):
    with pytest.raises(LabError, match="no such file"):
        load(tmp_path / "missing")
    (tmp_path / "results.json").write_text("{not json")
    with pytest.raises(LabError, match="not a lab results file"):
        load(tmp_path)
    (tmp_path / "results.json").write_text(json.dumps({"schema": 1}))
    with pytest.raises(LabError, match="not a lab results file of this version"):
        load(tmp_path / "results.json")


def test_results_are_written_with_their_schema_and_read_back_the_same(tmp_path):
    from bench.compare import write
    from bench.records import SCHEMA_FILE, schema

    results = fakes.results(ceiling=fakes.run(label="nginx return 200"), failures=["proxy failed: boom"])
    path = write(results, tmp_path)
    raw = json.loads(path.read_text())
    assert raw["$schema"] == SCHEMA_FILE and json.loads((tmp_path / SCHEMA_FILE).read_text()) == schema()
    assert "held_concurrency" not in raw["ceiling"]  # not measured by this run: left out, not null
    assert load(tmp_path) == results


def test_a_figure_that_is_not_a_number_is_refused_where_it_is_recorded():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="finite number"):
        fakes.run(float("nan"))
    with pytest.raises(ValidationError):
        fakes.run().throughput_rps = float("inf")


def test_compare_prints_ratios_of_shared_runs_and_changed_verdicts():
    def report(rps: float, p99: float, verdict: str):
        measured = fakes.run(rps, 8, p99, label="async /io")
        record = ClaimRecord(
            claim=2, text="-", what="-", runs=[measured], yardstick=Yardstick(name="-", formula="-", value=1, unit=""),
            measured=Measured(name="-", value=1, unit=""), ratio=rps / 100, band="-", verdict=verdict, reason="-",
        )  # fmt: skip
        return fakes.results(ceiling=measured.model_copy(update={"label": "nginx return 200"}), experiments=[record])

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


def test_a_peers_row_is_its_median_round_with_every_round_beside_it():
    from bench.peers import combine

    rounds = [run(rps, label=f"r{rps}") for rps in (100.0, 120.0, 90.0)]
    rounds[2].generator_saturated = True
    row = combine(rounds, PeerRow, peer="uvicorn", twinstack=False)
    assert row.label == "r100.0" and row.throughput_rps == 100.0  # a real round, not an average
    assert row.rounds_rps == [100.0, 120.0, 90.0] and (row.rps_low, row.rps_high) == (90.0, 120.0)
    assert row.generator_saturated  # one untrustworthy round marks the row
    assert row.peer == "uvicorn" and row.rank == 0  # ranked once every row is known
    assert combine(rounds[:2], PeerRow, peer="x", twinstack=False).throughput_rps == 100.0  # the lower, never invented


def peer_row(peer: str, rps: float, rank: int = 0, twinstack: bool = False, saturated: bool = False, **rounds):
    fields = {"rounds_rps": [rps], "rps_low": rps, "rps_high": rps, **rounds}
    return fakes.run(
        rps, 8, 3.0, label=peer, generator_saturated=saturated, settings={"server": peer}, cpu_ms_per_request=1.0,
        server_cpu_cores=1.0,
    ).extended(PeerRow, peer=peer, rank=rank, twinstack=twinstack, **fields)  # fmt: skip


def test_a_peer_whose_rounds_overlap_twinstacks_is_a_tie_however_far_its_median_is_ahead():
    from bench.report import versus

    ours = peer_row("twinstack async pool", 100.0, rps_low=95.0, rps_high=118.0)
    peer = peer_row("uvicorn", 115.0, rps_low=110.0, rps_high=121.0)
    assert "did not beat twinstack's fastest (118.0): a tie on this machine" in versus(peer, ours)
    clear = peer.model_copy(update={"rps_low": 119.0})
    assert "uvicorn beats twinstack's best configuration here (1.15x" in versus(clear, ours)


def test_a_peer_ahead_within_the_noise_is_called_a_tie_not_a_win():
    from bench.report import versus

    ours = peer_row("twinstack sync pool", 100.0)
    assert "a tie on this machine" in versus(peer_row("granian-wsgi", 102.0), ours)
    assert "beats twinstack's best configuration here (1.14x" in versus(peer_row("gunicorn-asgi", 114.0), ours)


def workload(*rows):
    from bench.records import Workload

    return Workload(path="/io", concurrency=8, rows=list(rows))


def test_peers_all_within_the_noise_are_one_tie_not_a_ranking():
    from bench.report import peer_sentence

    said = peer_sentence(workload(peer_row("uvicorn", 1003.0, 1), peer_row("twinstack async pool", 1000.0, 2, True)))
    assert said == "all 2 servers within 5% of each other: a tie on this machine"


def test_peers_a_peer_clearly_ahead_is_named_as_beating_twinstack_on_the_page():
    from bench.records import Peers
    from bench.report import render

    ranking = workload(peer_row("granian", 1200.0, 1), peer_row("twinstack async pool", 1000.0, 2, True))
    page = render(fakes.results(peers=Peers(groups={"ASGI": {"io": ranking}}, rounds=1, duration_s=1)))
    # Escaped by the template like every text of a run.
    assert "granian beats twinstack&#39;s best configuration here (1.20x" in page
    assert "<h3>ASGI: GET /io, 8 in flight</h3>" in page


def test_a_saturated_generator_is_said_under_its_table():
    from bench.report import macros, runs_table

    table = macros().table
    assert "saturated its CPU" not in table(runs_table([peer_row("python", 4000.0, 2)]))
    page = table(runs_table([peer_row("nginx static", 75000.0, 1, saturated=True), peer_row("python", 4000.0, 2)]))
    assert "saturated its CPU in nginx static:" in page and "lower bound" in page
    assert '<span class="warn">saturated</span>' in page


def test_every_text_of_a_run_is_escaped_on_the_page():
    from bench.report import render

    hostile = fakes.run(label="<script>alert(1)</script>", settings={"app": "<b>"})
    page = render(fakes.results(ceiling=hostile, static=[hostile.extended(StaticRun)]))
    assert "<script" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_a_locust_run_that_fails_keeps_the_proxy_runs_measured_before_it():
    from types import SimpleNamespace

    from bench import edge

    pool = SimpleNamespace(name="pool", base_url="http://127.0.0.1:9", settings={})

    class Generator:
        def wrk(self, label: str, *args, **kwargs):
            return run(100.0, label=label)

        def locust(self, *args, **kwargs):
            raise LabError("Locust wrote no statistics (exit 1)")

    failures: list[str] = []
    lab = SimpleNamespace(
        mode=MODES["tiny"], gen=Generator(),
        stack=SimpleNamespace(async_pool=pool, sync_pool=pool, nginx=pool, url="http://127.0.0.1:9",
                              proxy_url="http://127.0.0.1:9", curves={"gthread": SimpleNamespace(name="gthread")}),
        servers=SimpleNamespace(alive=lambda server: False),  # the gthread pool did not start: no rows for it
        section=lambda title: None, failed=lambda what, exc: failures.append(f"{what}: {exc}"),
    )  # fmt: skip
    runs = edge.proxy(lab)
    assert [(r.pool, r.path_kind) for r in runs][:2] == [
        ("async", "direct"),
        ("async", "nginx, upstream keep-alive"),
    ]
    assert len(runs) == 8 and all(r.ratio_to_direct == 1.0 for r in runs)
    assert failures == ["proxy: Locust: Locust wrote no statistics (exit 1)"]


def test_a_run_where_nothing_was_measured_still_renders_and_says_so():
    from bench.report import render

    page = render(fakes.results(failures=["curves failed: boom"]))
    verdicts = page[page.index("<h2>Verdicts</h2>") :]
    assert '<tr class="ceiling">' in verdicts and "not measured" in verdicts
    assert "curves failed: boom" in page and page.count("Not measured in this run") == 3  # curves, overhead, dbpath


def test_large_server_logs_are_gzipped_and_small_ones_stay_plain(tmp_path):
    import gzip

    from bench.procs import compress_logs

    (tmp_path / "nginx.log").write_text('{"status": 200}\n' * 200_000)
    (tmp_path / "sync.log").write_text("booted\n")
    assert compress_logs(tmp_path) == [tmp_path / "nginx.log.gz"]
    assert not (tmp_path / "nginx.log").exists() and (tmp_path / "sync.log").read_text() == "booted\n"
    with gzip.open(tmp_path / "nginx.log.gz", "rt") as fh:
        assert sum(1 for _ in fh) == 200_000


def test_servers_started_together_are_all_stopped_when_one_fails_or_the_experiment_raises(tmp_path):
    port = free_port()
    web = Server("web", [sys.executable, "-m", "http.server", "-b", "127.0.0.1", str(port)], port, {}, health_path="/")
    crash = Server("crash", [sys.executable, "-c", "raise SystemExit(3)"], free_port(), {})
    servers = Servers(tmp_path, CpuLayout(servers=(0,), generator=(0,)))
    try:
        with pytest.raises(LabError, match="crash exited while starting"):
            servers.start(web, crash)
        assert servers.running == {} and web.proc.poll() is not None  # web did not outlive the error
        with pytest.raises(RuntimeError, match="experiment broke"), servers.started(web):
            assert servers.alive(web)
            raise RuntimeError("experiment broke")
        assert servers.running == {} and not servers.alive(web)
    finally:
        servers.stop_all()


def test_a_peer_whose_run_fails_is_left_out_of_its_ranking_and_the_rest_are_ranked():
    from types import SimpleNamespace

    from bench.peers import _rank

    def wrk(label: str, *args, **kwargs):
        if "granian" in label:
            raise LabError("wrk exited 1")
        return run(200.0 if "uvicorn" in label else 100.0, label=label)

    failures: list[str] = []
    mode = MODES["tiny"].model_copy(update={"peer_rounds": 2})
    lab = SimpleNamespace(mode=mode, gen=SimpleNamespace(wrk=wrk), failed=lambda what, exc: failures.append(what))
    server = SimpleNamespace(base_url="http://127.0.0.1:9", settings={})
    entries = [("twinstack async pool", server), ("granian-asgi", server), ("uvicorn", server)]
    rows = _rank(lab, "ASGI", entries, "/io", 8)
    assert [(r.peer, r.rank, r.twinstack) for r in rows] == [("uvicorn", 1, False), ("twinstack async pool", 2, True)]
    assert all(len(r.rounds_rps) == 2 for r in rows)
    assert failures == ["peer granian-asgi on /io"]  # reported once, not once per round


def test_overhead_names_what_bound_a_run_from_what_it_measured():
    from bench.overhead import binds

    run_ = fakes.run(
        server_cpu_cores_by={"overhead-nginx": 0.4, "twinstack-async": 1.4}, generator_cpu_cores=0.15,
        box_cpu_utilisation=0.97,
    )  # fmt: skip
    said = binds(run_)
    assert said.startswith("the box's CPUs (97% busy)") and said.index("twinstack-async") < said.index("overhead-nginx")
    assert binds(run_.model_copy(update={"generator_saturated": True})).startswith("the load generator's CPU")
    assert binds(run_.model_copy(update={"box_cpu_utilisation": 0.3})).startswith("no CPU was saturated (box 30% busy")


def test_overhead_targets_are_ratios_of_rows_of_the_same_run():
    from bench import overhead
    from bench.records import LittleRun, OverheadPool, OverheadRow

    def row(name: str, rps: float) -> OverheadRow:
        return fakes.run(rps, box_cpu_utilisation=0.99, generator_cpu_cores=0.1).extended(
            OverheadRow, contender=name, rounds_rps=[rps], rps_low=rps, rps_high=rps
        )

    def io(ratio: float, staggered: bool) -> LittleRun:
        return fakes.run(1900.0 * ratio, 200).extended(
            LittleRun, delay_ms=100, staggered=staggered, little_rps=2000.0, steady_rps=2000.0 * ratio,
            little_ratio=ratio,
        )  # fmt: skip

    pools = {
        "async": OverheadPool(
            rows=[row(overhead.BARE, 1000.0), row(overhead.TWINSTACK, 800.0), row(overhead.THROUGH_NGINX, 640.0)],
            io=[io(0.98, staggered=True), io(0.5, staggered=False)],
        ),
        "sync": OverheadPool(rows=[row(overhead.BARE, 100.0)]),  # twinstack's rows missing: a failed start
    }
    by = {t.key: t for t in overhead.targets(pools)}
    assert by["async-vs-bare"].measured == 0.8 and by["async-vs-bare"].met
    assert by["async-nginx"].measured == 0.8 and not by["async-nginx"].met
    assert "minimal nginx" not in by["async-nginx"].figures  # no such row in this run
    assert by["sync-vs-bare"].met is None and by["sync-vs-bare"].binds.startswith("not measured")
    assert by["io-100ms-c200"].met and by["io-100ms-c200"].target == 0.97  # the staggered run is judged
    assert len(by) == 5


def test_activity_counts_the_connections_that_ran_a_statement_only(database_url: str):
    """A connection opened during the window that never ran a statement (pgbench's first, which
    reads the server's version) is not one the run used; one that ran a statement is, even
    when it was idle at every sample."""
    import psycopg

    from bench.database import Activity

    with (
        Activity(database_url, interval_s=0.01) as activity,
        psycopg.connect(database_url) as silent,
        psycopg.connect(database_url) as worker,
    ):
        worker.execute("SELECT 1")
        ran = worker.info.backend_pid
        deadline = time.monotonic() + 5
        while ran not in activity.seen and time.monotonic() < deadline:
            time.sleep(0.01)
        assert silent.info.backend_pid not in activity.seen
    assert activity.used == 1 and activity.error is None
