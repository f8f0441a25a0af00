"""Claim 15's pieces without a server: nginx's lab-only log read back, what a request cost each
process, HTTPS paired with HTTP round by round, and the verdict on both sides of its band."""

from __future__ import annotations

import json

import pytest

from bench.claims import tls
from bench.claims.tls import CASES, KEPT_ALIVE, NEW_CONNECTION, NO_RESUMPTION
from bench.modes import MODES
from bench.report import claim_views, render, tls_summary
from bench.verdicts import FAILS, HOLDS, INCONCLUSIVE
from tests.bench.fakes import results, run

ROUTES = MODES["full"].tls_routes


def line(run_id: str, scheme: str = "https", reused: str = ".", requests: int = 1) -> str:
    tls_on = scheme == "https"
    return json.dumps({
        "run": run_id, "scheme": scheme, "http": "HTTP/1.1", "tls": "TLSv1.3" if tls_on else "",
        "cipher": "TLS_AES_256_GCM_SHA384" if tls_on else "", "reused": reused if tls_on else "",
        "requests": requests, "status": 200,
    })  # fmt: skip


def test_the_lab_log_gives_each_runs_connections_protocols_and_resumed_handshakes():
    lines = [line("1"), line("1", reused="r"), line("1", reused="r"), line("2", "http"), '{"run": "3", "sche']
    opened = tls.connections(lines)
    assert set(opened) == {"1", "2"}  # the line cut short when nginx stopped is left out
    assert (opened["1"].count, opened["1"].resumed) == (3, 2)
    assert opened["1"].protocols() == "HTTP/1.1 over TLSv1.3, TLS_AES_256_GCM_SHA384"
    assert (opened["2"].count, opened["2"].resumed, opened["2"].protocols()) == (1, 0, "HTTP/1.1")


def test_a_servers_cpu_per_request_is_its_share_of_what_the_run_measured():
    measured = run(1000.0, cpu_ms_per_request=0.4, server_cpu_cores_by={"tls-nginx": 0.3, "async": 0.9})
    assert tls.cpu_ms_per_request(measured, "tls-nginx") == pytest.approx(0.1)
    assert tls.cpu_ms_per_request(measured, "nonesuch") == 0.0
    assert tls.cpu_ms_per_request(run(1000.0), "tls-nginx") == 0.0  # no CPU measured: nothing to share


def test_wrk_sends_the_headers_it_is_given_with_every_request(monkeypatch, tmp_path):
    """``Connection: close`` (a new connection per request) and the run's mark for nginx's log
    reach wrk's command line as -H options, before the URL."""
    from bench import load

    started = []
    monkeypatch.setattr(load, "wrk_binary", lambda: "wrk")
    monkeypatch.setattr(load.subprocess, "Popen", lambda cmd, **kwargs: started.append(cmd))
    gen = load.Generator([0], 1, lambda r: None, shared=True, scratch=tmp_path, out=tmp_path)
    gen._start_wrk("https://127.0.0.1:9/x", 32, 1, headers=("Connection: close", f"{tls.RUN_HEADER}: 7"))
    cmd = started[0]
    assert cmd[cmd.index("-H") : cmd.index("-H") + 4] == ["-H", "Connection: close", "-H", "X-Twinstack-Lab-Run: 7"]
    assert cmd.index("-H") < cmd.index("https://127.0.0.1:9/x")
    gen._start_wrk("http://127.0.0.1:9/x", 32, 1)
    assert "-H" not in started[1]


def test_opening_a_connection_is_the_cycle_littles_law_gives_less_what_wrk_timed():
    # 32 connections, 8000 req/s: each request's whole cycle takes 4 ms; wrk timed 1.5 of them.
    measured = run(8000.0, c=32, p99=3.0)  # mean latency p99 / 2 = 1.5 ms
    assert tls.connect_ms(measured) == pytest.approx(2.5)
    assert tls.connect_ms(run(0.0, c=32)) == 0.0


def one_run(route: str, kind: str, scheme: str, ms: float, plain: float, resumption: str = "", **fields: object):
    """A run as the experiment leaves it: nginx's CPU a request ``ms`` (``plain`` over HTTP, which
    sets the throughput and p99 ratios), the connections nginx logged, what bound it."""
    new = kind == NEW_CONNECTION
    settings = {"server": "nginx", "scheme": scheme, "route": route, "connection": kind, "round": fields.pop("r")}
    if resumption:
        settings["tls_resumption"] = resumption
    figures = {
        "label": f"{scheme.upper()} {route}, {kind}{', resumption off' if resumption == 'off' else ''}",
        "url": f"{scheme}://127.0.0.1:9{route}",
        "requests": 10000,
        "settings": settings,
        "nginx_cpu_ms_per_request": ms,
        "generator_cpu_ms_per_request": ms * 1.5,
        "connections_opened": 10000 if new else 32,
        "tls_resumed": (9968 if new and resumption == "on" else 0) if scheme == "https" else 0,
        "tls": "HTTP/1.1 over TLSv1.3, TLS_AES_256_GCM_SHA384" if scheme == "https" else "HTTP/1.1",
        "connect_ms": (5.0 if scheme == "https" else 0.5) if new else None,
        "bound_by": "the box's CPUs, 97% busy (app 1.10, generator 0.85 cores)",
    }
    return run(10000.0 * plain / ms, c=32, p99=2.0 * ms / plain, **{**figures, **fields})


def measured(costs: dict[str, list[tuple[float, float]]], **https_fields: object) -> list:
    """Every run of every round, the same on both routes: ``costs[case]`` holds, per round, what
    the plain request cost nginx and what TLS added (with resumption off, the plain request is
    the new connection's)."""
    runs = []
    for i, ((ka, ka_tls), (nc, nc_tls), (_, full_tls)) in enumerate(zip(*(costs[c] for c in CASES), strict=True)):
        for route in ROUTES:
            more = {"r": i + 1, **https_fields}
            runs += [
                one_run(route, KEPT_ALIVE, "http", ka, ka, r=i + 1),
                one_run(route, KEPT_ALIVE, "https", ka + ka_tls, ka, "on", **more),
                one_run(route, NEW_CONNECTION, "http", nc, nc, r=i + 1),
                one_run(route, NEW_CONNECTION, "https", nc + nc_tls, nc, "on", **more),
                one_run(route, NEW_CONNECTION, "https", nc + full_tls, nc, "off", **more),
            ]
    return runs


def verdict(runs: list) -> tuple[str, str]:
    return tls.tls_verdict(tls.pair_up(runs), runs, ROUTES)


HANDSHAKE = {
    KEPT_ALIVE: [(0.03, 0.008), (0.031, 0.01), (0.029, 0.009)],
    NEW_CONNECTION: [(0.07, 0.3)] * 3,
    NO_RESUMPTION: [(0.07, 0.4)] * 3,
}


def test_https_is_paired_with_http_of_the_same_route_connections_and_round():
    runs = measured(HANDSHAKE)
    table = tls.pair_up(runs)
    assert sorted(table) == sorted((route, case) for route in ROUTES for case in CASES)
    case = table[(ROUTES[0], NEW_CONNECTION)]
    assert len(case.pairs) == 3
    https = case.pairs[0].https
    assert https.ratio_to_http == pytest.approx(0.07 / 0.37, abs=1e-4)
    assert https.p99_ratio_to_http == pytest.approx(0.37 / 0.07, abs=1e-3)
    assert case.cost_ms == pytest.approx(0.3)
    assert table[(ROUTES[0], KEPT_ALIVE)].cost_ms == pytest.approx(0.009)
    assert case.handshakes() == (96, 29904)
    assert case.outcome() == "slower"
    # With resumption off, HTTPS is compared with the same plain runs as a new connection is.
    full = table[(ROUTES[0], NO_RESUMPTION)]
    assert [p.http for p in full.pairs] == [p.http for p in case.pairs]
    assert full.cost_ms == pytest.approx(0.4) and full.handshakes() == (30000, 0)


def test_claim_15_holds_when_the_handshake_dominates_what_tls_costs_on_every_route():
    state, reason = verdict(measured(HANDSHAKE))
    assert state == HOLDS, reason
    assert reason.startswith("the handshake is what TLS costs. /async/health: nginx's CPU a request kept alive 0.030")
    assert "(TLS +0.009); a new connection per request 0.070 over HTTP, 0.370 over HTTPS (TLS +0.300, 33 x;" in reason
    assert "29904 of 30000 handshakes resumed" in reason and "0.470 with resumption off (TLS +0.400, 44 x" in reason
    for route in ROUTES:
        assert f"{route}: " in reason


@pytest.mark.parametrize("case", [NEW_CONNECTION, NO_RESUMPTION])
def test_claim_15_does_not_hold_where_a_new_connection_costs_about_what_keep_alive_does(case):
    cheap = {**HANDSHAKE, case: [(0.07, 0.02)] * 3}
    state, reason = verdict(measured(cheap))
    assert state == FAILS and reason.startswith("the handshake does not dominate on every route")


def test_claim_15_compares_every_round_with_every_round_not_only_the_medians():
    # Medians 0.009 against 0.3 (33 x), but one kept-alive round cost 0.08: 0.3 < 4 x 0.08.
    noisy = {**HANDSHAKE, KEPT_ALIVE: [(0.03, 0.008), (0.031, 0.08), (0.029, 0.009)]}
    assert verdict(measured(noisy))[0] == FAILS


def test_a_keep_alive_cost_below_the_resolution_counts_as_the_resolution():
    free = {**HANDSHAKE, KEPT_ALIVE: [(0.03, -0.001)] * 3}
    state, reason = verdict(measured(free))
    assert state == HOLDS, reason
    table = tls.pair_up(measured(free))
    factor = tls.handshake_factor(table[(ROUTES[0], KEPT_ALIVE)], table[(ROUTES[0], NEW_CONNECTION)])
    assert factor == pytest.approx(0.3 / tls.RESOLUTION_MS)


@pytest.mark.parametrize(
    ("https_fields", "said"),
    [
        ({"tls": "HTTP/1.1"}, "nginx logged 'HTTPS /async/health, kept alive' as HTTP/1.1"),
        ({"connections_opened": 0}, "nginx logged no connection of 'HTTPS /async/health, kept alive'"),
        ({"errors": 500, "error_rate": 0.05}, "500 of 10000 requests failed"),
        ({"settled": False}, "still busy from the previous run"),
    ],
)
def test_claim_15_is_inconclusive_when_the_runs_do_not_show_what_they_were_meant_to(https_fields, said):
    state, reason = verdict(measured(HANDSHAKE, **https_fields))
    assert state == INCONCLUSIVE and said in reason, reason


def test_a_new_connection_per_request_must_have_opened_one_for_each_request():
    runs = measured(HANDSHAKE)
    for r in runs:
        if r.settings["connection"] == NEW_CONNECTION and r.settings["scheme"] == "https":
            r.connections_opened = 40  # wrk kept its connections open after all
    state, reason = verdict(runs)
    assert state == INCONCLUSIVE and "opened 40 connections for 10000 requests" in reason


def test_the_server_with_resumption_off_must_have_made_every_handshake_a_full_one():
    runs = measured(HANDSHAKE)
    for r in runs:
        if tls.case_of(r) == NO_RESUMPTION:
            r.tls_resumed = 12
    state, reason = verdict(runs)
    assert state == INCONCLUSIVE and "resumed 12 TLS sessions with resumption off" in reason


def test_a_saturated_generator_leaves_the_cost_per_request_to_decide_and_is_said():
    state, reason = verdict(measured(HANDSHAKE, generator_saturated=True))
    assert state == HOLDS, reason
    assert "The load generator saturated its CPU in 18 of 30 runs" in reason and "nginx's CPU per request" in reason


def test_a_case_measured_over_one_scheme_only_is_inconclusive():
    runs = [r for r in measured(HANDSHAKE) if not (r.settings["route"] == ROUTES[1] and r.settings["scheme"] == "http")]
    state, reason = verdict(runs)
    assert state == INCONCLUSIVE and f"{ROUTES[1]}, {KEPT_ALIVE}; {ROUTES[1]}, {NEW_CONNECTION}; " in reason


def test_the_record_shows_where_the_handshake_weighs_least_and_the_report_a_table_of_ratios():
    runs = measured(HANDSHAKE)
    for r in runs:  # the static file's resumed handshakes cost TLS less than anything else
        if r.settings["route"] == ROUTES[1] and tls.case_of(r) == NEW_CONNECTION:
            r.nginx_cpu_ms_per_request = 0.07 if r.settings["scheme"] == "http" else 0.27
    table = tls.pair_up(runs)
    record = tls.record(table, runs, 32, 3, 1, 42, ROUTES)
    assert record.claim == 15 and record.verdict == HOLDS and record.chart == "tls"
    assert record.measured.name == f"TLS's cost, {NEW_CONNECTION}, {ROUTES[1]}"
    assert record.measured.value == pytest.approx(0.2) and record.yardstick.value == pytest.approx(0.009)
    assert record.ratio == pytest.approx(0.2 / 0.009, rel=1e-3)
    assert "(seed 42)" in record.what
    summary = tls_summary(record)
    assert [row[0].text for row in summary.rows] == [ROUTES[0]] * 3 + [ROUTES[1]] * 3
    assert [row[1].text for row in summary.rows] == list(CASES) * 2
    assert summary.rows[2][-1].text.startswith("the box's CPUs")  # what bound the HTTPS runs
    assert summary.rows[2][-2].text == "30000 / 0"  # full / resumed handshakes with resumption off
    page = render(results(experiments=[record]))
    assert "TLS handshakes full / resumed" in page and "96 / 29904" in page and "nginx: CPU ms per request" in page
    assert claim_views(results(experiments=[record]))[0].figure is not None


def test_the_server_without_resumption_has_twinstacks_tls_policy_line_for_line():
    """The lab's copy of the HTTPS server differs from snippets/tls.conf in its session cache
    and timeout only (bench/nginx-tls.conf.template)."""
    from tests.support import ROOT

    def directives(text: str) -> list[str]:
        lines = (line.split("#", 1)[0].strip() for line in text.splitlines())
        return [line for line in lines if line]

    policy = directives((ROOT / "nginx" / "snippets" / "tls.conf").read_text())
    template = (ROOT / "bench" / tls.TEMPLATE).read_text()
    lab = directives(template[template.index("server {") :])
    session = ("ssl_session_cache", "ssl_session_timeout")
    assert [d for d in policy if not d.startswith(session)] == [d for d in lab if d in policy]
    assert "ssl_session_cache off;" in lab and "ssl_session_tickets off;" in lab
    assert "include snippets/routes.conf;" in lab  # the same routes
