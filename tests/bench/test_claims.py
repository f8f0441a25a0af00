"""Each claim's verdict from canned measurements: holds, does not hold, inconclusive.

The claims are functions of a ``registry.Context``; here a stand-in (tests/bench/fakes.py)
hands them the runs a load generator would have measured, so every band is checked on both
sides without starting a server.
"""

from __future__ import annotations

import pytest

from bench.claims import cpu_bound, features, io_bound, scaling, stall
from bench.modes import MODES
from bench.records import Curve, Curves, Latency, Series
from bench.verdicts import FAILS, HOLDS, INCONCLUSIVE, physical_limits
from tests.bench.fakes import ASYNC, SYNC, DbLab, FakeLab, Pool
from tests.bench.fakes import run as measured


def curve(settings: dict, points: list, wait_s: float, name: str = "async") -> Curves:
    """One configuration's curve with its limits, as the curves experiment builds it (as both
    curves: each claim reads its own)."""
    ref = min((p.cpu_ms_per_request for p in points if p.cpu_ms_per_request > 0), default=0.0)
    for p in points:
        p.limits = physical_limits(p, settings, p.concurrency, wait_s, 2, False, ref)
    levels = [p.concurrency for p in points]
    one = Curve(path="/x", levels=levels, series={name: Series(settings=settings, points=points)})
    return Curves(io=one, cpu=one)


# --- claim 2: async throughput against concurrency / latency -----------------------------------


def test_claim_2_holds_when_every_wait_bound_point_reaches_littles_law():
    io = curve(ASYNC, [measured(19.5, 1), measured(150.0, 8), measured(600.0, 32)], 0.05)
    e = io_bound.claim_2(FakeLab(), io)
    assert e.verdict == HOLDS
    # The figures shown are those of the deciding point, so measured / yardstick == ratio.
    assert e.ratio == pytest.approx(e.measured.value / e.yardstick.value, abs=1e-3)


def test_claim_2_does_not_hold_when_a_point_falls_short_and_names_that_point():
    io = curve(ASYNC, [measured(19.5, 1), measured(80.0, 8), measured(600.0, 32)], 0.05)
    e = io_bound.claim_2(FakeLab(), io)
    assert e.verdict == FAILS
    assert e.measured.name == "throughput at c=8" and e.ratio == pytest.approx(0.5)


def test_claim_2_is_inconclusive_when_the_cpu_was_busy_at_every_level():
    busy = {"cpu_ms_per_request": 0.5, "server_cpu_cores": 1.9}
    io = curve(ASYNC, [measured(3000.0, 512, **busy), measured(3500.0, 1024, **busy)], 0.05)
    e = io_bound.claim_2(FakeLab(), io)
    assert e.verdict == INCONCLUSIVE and "Little's law was never the binding limit" in e.reason


def test_claim_2_is_inconclusive_when_the_generator_saturated():
    io = curve(ASYNC, [measured(19.5, 1), measured(150.0, 8, generator_saturated=True)], 0.05)
    e = io_bound.claim_2(FakeLab(), io)
    assert e.verdict == INCONCLUSIVE and "load generator saturated" in e.reason


# --- claim 4: a sync worker serves one request at a time ---------------------------------------


def sync_curve(rps: float, top: dict | None = None) -> Curves:
    points = [measured(19.0, 1), measured(rps, 8), measured(rps, 32, **(top or {}))]
    return curve(SYNC, points, 0.05, name="sync")


def test_claim_4_holds_at_workers_over_latency_and_fails_above_or_below_it():
    assert io_bound.claim_4(FakeLab(), sync_curve(96.0)).verdict == HOLDS  # 5 workers / 50 ms = 100
    assert io_bound.claim_4(FakeLab(), sync_curve(60.0)).verdict == FAILS
    # Far above workers / latency: the pool is not serving one request per worker.
    assert io_bound.claim_4(FakeLab(), sync_curve(200.0)).verdict == FAILS


def test_claim_4_says_a_censored_p99_is_a_lower_bound():
    slow = Latency(p50=500.0, p95=900.0, p99=983.0, mean=500.0, max=983.0)
    e = io_bound.claim_4(FakeLab(), sync_curve(96.0, {"latency_censored": True, "latency_ms": slow}))
    assert ">= 983 ms, censored" in e.reason and "c / throughput = 0.3 s" in e.reason
    assert "censored" not in io_bound.claim_4(FakeLab(), sync_curve(96.0)).reason


# --- claim 7: sync workers against the utilisation law -----------------------------------------


def cpu_curve(rps_at_4: float) -> Curves:
    busy = {"cpu_ms_per_request": 10.0, "server_cpu_cores": 1.9}
    points = [measured(95.0, 1, **busy), measured(rps_at_4, 4, **busy), measured(195.0, 16, **busy)]
    return curve(SYNC, points, 0.0, name="sync")


def test_claim_7_holds_near_cores_over_cpu_time_and_judges_its_worst_point():
    e = cpu_bound.claim_7(FakeLab(), cpu_curve(190.0))  # 2 cores / 10 ms = 200 req/s
    assert e.verdict == HOLDS and e.yardstick.value == pytest.approx(200.0)
    bad = cpu_bound.claim_7(FakeLab(), cpu_curve(120.0))
    assert bad.verdict == FAILS and bad.measured.name == "throughput at c=4"
    assert bad.ratio == pytest.approx(bad.measured.value / bad.yardstick.value, abs=1e-3)


# --- claims 3 and 9: the stalled event loop ----------------------------------------------------


def stall_runs(alone: float, anti: float, fix: float) -> list:
    return [measured(300.0, 8, p99=alone), measured(100.0, 8, p99=anti), measured(300.0, 8, p99=fix)]


def stall_claim(runs: list, fix_decides: bool):
    anti, fix = ("anti-pattern", "/anti"), ("fix", "/fix")
    return stall._stall_claim(FakeLab(runs), 9, "t", "/io", 100.0, anti, fix, what="-", fix_decides=fix_decides)


def test_a_stall_holds_when_the_anti_pattern_adds_half_its_cost_and_the_fix_does_not():
    e = stall_claim(stall_runs(20.0, 120.0, 22.0), fix_decides=True)
    assert e.verdict == HOLDS
    assert e.measured.value == pytest.approx(100.0) and e.yardstick.value == 100.0
    assert e.ratio == pytest.approx(1.0)


def test_a_stall_does_not_hold_when_the_loop_kept_serving_or_the_fix_stalls_too():
    assert stall_claim(stall_runs(20.0, 40.0, 22.0), fix_decides=True).verdict == FAILS
    assert stall_claim(stall_runs(20.0, 120.0, 110.0), fix_decides=True).verdict == FAILS
    # Claim 3 is the stall itself; its fix is shown beside it, not judged.
    assert stall_claim(stall_runs(20.0, 120.0, 110.0), fix_decides=False).verdict == HOLDS


def test_a_stall_is_inconclusive_when_the_interfering_load_did_not_run():
    runs = stall_runs(20.0, 120.0, 22.0)
    runs[1].background = {"url": "/anti", "concurrency": 1, "requests": 0, "errors": 0, "latency_ms_p50": 0.0}
    assert stall_claim(runs, fix_decides=True).verdict == INCONCLUSIVE


# --- claim 1: one async process holds the connections ----------------------------------------


def held(in_flight: int):
    """Claim 1's run: ``in_flight`` of the tiny mode's 100 connections answered side by side."""
    return measured(500.0, 100, held_concurrency=in_flight, server_pss_mb=40.0, server_pss_idle_mb=30.0)


def test_claim_1_holds_from_80_percent_of_the_connections_in_flight_at_once():
    assert MODES["tiny"].connections == 100
    e = io_bound.claim_1(FakeLab([held(80)]))  # band: held / connections >= 0.8
    assert e.band == "ratio >= 0.8"
    assert (e.verdict, e.ratio) == (HOLDS, pytest.approx(0.8))
    assert e.runs[0].pss_kb_per_connection == pytest.approx(102.4)  # 10 MiB over 100 connections
    e = io_bound.claim_1(FakeLab([held(79)]))
    assert (e.verdict, e.ratio) == (FAILS, pytest.approx(0.79))


# --- claim 6: memory per concurrent request, sync workers against one event loop ----------------


def memory_runs(sync_pss_mb: float, async_pss_mb: float = 40.0) -> list:
    """Claim 6's three runs (sync workers, gthread threads, one event loop), 4 requests held."""
    return [
        measured(20.0, 4, server_pss_mb=pss, server_pss_idle_mb=pss - 1.0) for pss in (sync_pss_mb, 44.0, async_pss_mb)
    ]


def test_claim_6_holds_from_one_and_a_half_times_the_event_loops_memory_per_request():
    assert max(MODES["tiny"].scale) == 4  # requests held at once
    pools = {4: Pool(SYNC)}, {4: Pool({"worker_class": "gthread", "workers": 1, "threads": 4})}
    e = scaling._claim_6(FakeLab(memory_runs(60.0)), *pools)  # 15 MiB a request against 10
    assert e.band == "ratio >= 1.5"
    assert (e.verdict, e.ratio) == (HOLDS, pytest.approx(1.5))
    assert e.ratio == pytest.approx(e.measured.value / e.yardstick.value, abs=1e-3)
    e = scaling._claim_6(FakeLab(memory_runs(59.96)), *pools)  # 14.99 MiB a request
    assert (e.verdict, e.ratio) == (FAILS, pytest.approx(1.499))


# --- claim 6: what the reason says about threads -----------------------------------------------


@pytest.mark.parametrize(
    ("thread_mb", "async_mb", "said"),
    [(7.4, 8.3, "less than the event loop (0.89x)"), (12.0, 8.0, "more than the event loop (1.50x)"),
     (8.1, 8.0, "about what the event loop takes")],
)  # fmt: skip
def test_claim_6_says_where_threads_stand_as_measured(thread_mb, async_mb, said):
    assert said in scaling._threads_vs_loop(thread_mb, async_mb)


def test_claim_7_is_inconclusive_when_no_cpu_time_was_measured():
    idle = {"cpu_ms_per_request": 0.0, "server_cpu_cores": 0.0}
    cpu = curve(SYNC, [measured(95.0, 1, **idle), measured(190.0, 4, **idle)], 0.0, name="sync")
    e = cpu_bound.claim_7(FakeLab(), cpu)
    assert e.verdict == INCONCLUSIVE and "no CPU time was measured" in e.reason


def test_claim_4_shows_the_point_that_decides_it_not_the_last_one():
    io = sync_curve(96.0)
    points = io.io.series["sync"].points
    points[1].throughput_rps = 60.0  # c=8 falls short; c=32 is fine
    points[1].limits = physical_limits(points[1], SYNC, 8, 0.05, 2, False)
    e = io_bound.claim_4(FakeLab(), io)
    assert e.verdict == FAILS and e.measured.name == "throughput at c=8"
    assert e.ratio == pytest.approx(0.6)


@pytest.mark.parametrize(
    ("claim", "kind", "missing"), [(io_bound.claim_2, "io", "async"), (io_bound.claim_4, "io", "sync"),
                                   (cpu_bound.claim_7, "cpu", "sync")],
)  # fmt: skip
def test_a_curve_that_was_not_measured_leaves_its_claim_inconclusive_not_crashed(claim, kind, missing):
    empty = Curve(path="/x", levels=[1], series={})
    for curves in (Curves(io=empty, cpu=empty), Curves()):  # a configuration left out, or no curve at all
        e = claim(FakeLab(), curves)
        assert e.verdict == INCONCLUSIVE and f"{missing} pool's /{kind} curve could not be measured" in e.reason


# --- claim 5: every size against workers x threads / latency -----------------------------------


def test_claim_5_is_decided_by_its_weakest_size_and_shows_that_size():
    lab = FakeLab([measured(19.0, 32), measured(38.0, 32), measured(15.0, 32), measured(39.0, 32)])
    lab.mode = MODES["quick"]  # sizes 1 and 4: two sync pools, two gthread workers
    sync = {n: Pool({**SYNC, "workers": n}) for n in (1, 4)}
    gthread = {n: Pool({"worker_class": "gthread", "workers": 1, "threads": n}) for n in (1, 4)}
    e = scaling._claim_5(lab, sync, gthread)
    # 4 sync workers reached 38 of 80 req/s: that size decides, and the row shows it.
    assert e.verdict == FAILS and e.measured.name == "throughput, sync workers: 4"
    assert e.ratio == pytest.approx(e.measured.value / e.yardstick.value, abs=1e-3)
    assert [(r.family, r.slots) for r in e.runs] == [("sync workers", 1), ("sync workers", 4),
                                                     ("gthread threads", 1), ("gthread threads", 4)]  # fmt: skip


def test_claim_5_holds_when_every_size_reaches_its_limit():
    """Throughput growing with workers and with threads, each size within 0.8 of workers x
    threads / latency: holds, and says how far 4 went beyond 1."""
    lab = FakeLab([measured(19.0, 32), measured(76.0, 32), measured(18.0, 32), measured(77.0, 32)])
    lab.mode = MODES["quick"]
    sync = {n: Pool({**SYNC, "workers": n}) for n in (1, 4)}
    gthread = {n: Pool({"worker_class": "gthread", "workers": 1, "threads": n}) for n in (1, 4)}
    e = scaling._claim_5(lab, sync, gthread)
    assert e.verdict == HOLDS, e.reason
    assert "4 workers answered 4.0x what 1 did" in e.reason
    assert e.ratio >= 0.8


# --- claim 8: asyncio.gather makes N waits cost one wait ----------------------------------------


def fanout_runs(async_p50: float) -> list:
    """Claim 8's runs: the async pool (gather), then the sync pool (10 calls one after another)."""
    return [measured(10.0, p99=2 * async_p50), measured(2.0, p99=2 * 500.0)]


def test_claim_8_holds_up_to_two_waits_with_asyncio_gather():
    delay = MODES["tiny"].io_delay_ms  # each of the 10 calls waits this long
    e = features.claim_8(FakeLab(fanout_runs(2 * delay)))  # band: p50 / delay <= 2
    assert e.band.startswith("ratio <= 2 ")
    assert (e.verdict, e.ratio) == (HOLDS, pytest.approx(2.0))
    assert e.ratio == pytest.approx(e.measured.value / e.yardstick.value, abs=1e-3)
    e = features.claim_8(FakeLab(fanout_runs(2 * delay + 1)))
    assert (e.verdict, e.ratio) == (FAILS, pytest.approx(2.02))


# --- claim 10: background work runs after the response is sent ---------------------------------


def job_runs(p99_ms: float, finished_after: tuple[int, int] = (2, 2)) -> list:
    """Claim 10's runs, one per pool: the tiny mode's 2 jobs each, the p99 time to their 202."""
    return [measured(10.0, p99=p99_ms, finished_after_response=n) for n in finished_after]


def test_claim_10_holds_while_the_202_takes_at_most_half_the_jobs_duration():
    assert (MODES["tiny"].jobs, MODES["tiny"].name) == (2, "tiny")  # tiny: 2 jobs of 200 ms
    e = features.claim_10(FakeLab(job_runs(100.0)))  # band: p99 / 200 ms <= 0.5
    assert e.band.startswith("ratio <= 0.5 and every job finished after")
    assert (e.verdict, e.ratio, e.yardstick.value) == (HOLDS, pytest.approx(0.5), 200.0)
    e = features.claim_10(FakeLab(job_runs(101.0)))
    assert (e.verdict, e.ratio) == (FAILS, pytest.approx(0.505))


def test_claim_10_does_not_hold_when_a_job_finished_before_its_response():
    # A fast 202 for a job that was already done is work done before the response: not the claim.
    e = features.claim_10(FakeLab(job_runs(20.0, finished_after=(2, 1))))
    assert e.verdict == FAILS and "3 of 4 jobs" in e.reason


# --- claim 11: WebSockets -----------------------------------------------------------------------


def ws(opened: int, handshakes: int, refused_status: int = 0, p99: float = 5.0, **fields):
    return measured(0.0, p99=p99, opened=opened, handshakes=handshakes, refused_status=refused_status, **fields)


@pytest.mark.parametrize(
    ("asgi_opened", "wsgi_handshakes", "wsgi_echoed", "verdict"),
    [
        (500, 20, 0, HOLDS),
        (496, 20, 0, HOLDS),  # a few lost on a loaded box: still >= 99 %
        (400, 20, 0, FAILS),  # the event loop did not hold them: that is the claim failing, not noise
        (500, 20, 20, FAILS),  # a WSGI app that echoes would refute the claim
        (500, 12, 0, INCONCLUSIVE),  # handshakes that failed say nothing about what WSGI does after one
    ],
)
def test_claim_11_verdict(asgi_opened, wsgi_handshakes, wsgi_echoed, verdict):
    from bench.claims.features import websocket_verdict

    ok = ws(asgi_opened, asgi_opened, requests=500, errors=500 - asgi_opened, error_rate=(500 - asgi_opened) / 500)
    refused = ws(0, 0, refused_status=404)
    attempt = ws(wsgi_echoed, wsgi_handshakes)
    assert websocket_verdict(ok, refused, attempt, 500, 20)[0] == verdict


# --- claim 12: the database pool as the limit ----------------------------------------------------


def db_runs(small_top_rps: float) -> list:
    """Claim 12's runs in the order it measures them (tiny: c=1 and c=8 on each pool): the
    small async pool (2 workers x 2 connections), the large one, the sync pool."""
    return [
        measured(19.0, 1), measured(small_top_rps, 8),
        measured(19.0, 1), measured(150.0, 8),
        measured(19.0, 1), measured(38.0, 8),
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("small_top_rps", "refuse", "verdict"),
    [
        (76.0, True, HOLDS),  # 0.95 x 4 connections / 50 ms, and the master over budget refused
        (88.0, True, HOLDS),  # 1.10: the band's top
        (89.0, True, FAILS),  # above it: the pool was not the limit
        (55.0, True, FAILS),  # 0.69: below the band's bottom (0.7)
        (76.0, False, FAILS),  # in the band, but a master over the budget started
    ],
)
def test_claim_12_holds_in_its_band_with_a_refused_master_and_fails_outside(small_top_rps, refuse, verdict):
    from bench.claims import database

    e = database.claim_12(DbLab(db_runs(small_top_rps), refuse=refuse))
    assert e.verdict == verdict, e.reason
    assert e.yardstick.value == pytest.approx(80.0)  # 2 workers x 2 connections / 50 ms
    assert e.ratio == pytest.approx(small_top_rps / 80.0, abs=1e-3)
