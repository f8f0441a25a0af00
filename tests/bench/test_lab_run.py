"""The lab, end to end, in its tiny mode: the real servers, nginx and wrk, for a second a point.

It asserts no timing (this machine is shared and noisy). It asserts that the report is
complete and well-formed: every claim of bench/verdicts.py present with a verdict that is one of
three, every figure a finite number from a run that actually carried requests, results.json valid
against bench/results.schema.json, every chart inline, and the comparison tool reading the result.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bench.modes import MODES
from bench.verdicts import CLAIMS, VERDICTS
from tests.support import ROOT, require_binary

pytestmark = [pytest.mark.integration, pytest.mark.timeout(660)]

RUN_FIGURES = (
    "requests",
    "errors",
    "error_rate",
    "throughput_rps",
    "server_cpu_s",
    "server_cpu_cores",
    "cpu_ms_per_request",
    "server_rss_mb",
    "server_pss_mb",
    "generator_cpu_s",
    "generator_cpu_cores",
    "box_cpu_utilisation",
)
LATENCIES = ("p50", "p95", "p99", "mean", "max")


def number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def check_run(run: dict, where: str) -> None:
    for key in RUN_FIGURES:
        assert number(run[key]), f"{where}: {key}={run[key]!r}"
        assert run[key] >= 0, f"{where}: {key} negative"
    for key in LATENCIES:
        assert number(run["latency_ms"][key]), f"{where}: latency {key}"
    for flag in ("generator_saturated", "box_saturated", "settled", "latency_censored"):
        assert isinstance(run[flag], bool), f"{where}: {flag}={run[flag]!r}"
    assert run["requests"] > 0, f"{where}: no request was made"
    for key, value in run.get("limits", {}).items():
        assert key == "binding" or number(value), f"{where}: limits.{key}={value!r}"


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory, nginx_bin: str) -> Path:
    require_binary(shutil.which("wrk"), "wrk")
    require_binary(shutil.which("pgbouncer") or shutil.which("pgbouncer", path="/usr/sbin"), "pgbouncer")
    out = tmp_path_factory.mktemp("bench") / "report"
    result = subprocess.run(
        [sys.executable, "-m", "bench", "run", "--mode", "tiny", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    # Progress is shown while it runs, and the verdicts at the end.
    assert "claim 1:" in result.stdout and "Report:" in result.stdout
    return out


@pytest.fixture(scope="module")
def results(report: Path) -> dict:
    return json.loads((report / "results.json").read_text())


def test_results_json_validates_against_the_checked_in_schema(report):
    from bench.records import SCHEMA_FILE

    schema = ROOT / "bench" / SCHEMA_FILE
    # The copy beside it, the file its $schema names, is the same schema.
    assert json.loads((report / SCHEMA_FILE).read_text()) == json.loads(schema.read_text())
    assert json.loads((report / "results.json").read_text())["$schema"] == SCHEMA_FILE
    check = Path(sys.executable).with_name("check-jsonschema")
    result = subprocess.run(
        [str(check), "--schemafile", str(schema), str(report / "results.json")], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_claim_is_one_experiment_with_a_verdict(results):
    assert results["failures"] == []
    experiments = results["experiments"]
    assert [e["claim"] for e in experiments] == sorted(CLAIMS)
    for e in experiments:
        where = f"claim {e['claim']}"
        assert e["verdict"] in VERDICTS, where
        assert e["reason"] and e["what"] and e["band"], where
        assert number(e["ratio"]), where
        assert number(e["yardstick"]["value"]) and e["yardstick"]["formula"], where
        assert number(e["measured"]["value"]), where
        assert e["runs"], where
        for run in e["runs"]:
            if e["claim"] == 11 and run["label"].startswith("sync"):
                continue  # the refused WSGI handshake: no request is the point
            check_run(run, where)


def test_claim_13_puts_the_connection_budget_beside_every_run(results, report):
    """Every stack and pgbench ran, each run carries its budget and the connections it really
    used (never more than it was given: through pgbouncer, its server pool, however many client
    connections the workers keep), its ratio to pgbench on as many connections, and
    what bound it; no request failed (a wrong id would be a 404)."""
    record = next(e for e in results["experiments"] if e["claim"] == 13)
    families = {run["family"] for run in record["runs"]}
    assert {"q-sync", "q-sync-pgbouncer", "q-async-pgbouncer"} <= families
    assert any(f.startswith("q-async-") and "pgbouncer" not in f for f in families)
    assert any(f.startswith("pgbench-") for f in families)
    # Beside each direct budget, the raw-driver app on the same workers and connections.
    assert "q-sync-raw" in families and any(f.startswith("q-async-raw-") for f in families)
    assert "What the serving model changes" in record["reason"] and "What the library layer costs" in record["reason"]
    for run in record["runs"]:
        where = f"claim 13: {run['label']}"
        assert run["errors"] == 0, where
        assert run["db_budget"] and run["bound_by"], where
        # Used: a run that held no connection measured nothing. The peak is what a sample every
        # 20 ms caught running, and a one-round-trip read (autocommit) is far shorter than that:
        # it may read 0 on a run that was never short of connections, never more than given.
        assert 1 <= run["db_connections_used"] <= run["db_connections"], where
        assert 0 <= run["db_connections_peak"] <= run["db_connections"], where
        assert number(run["database_ratio"]) and run["database_ratio"] > 0, where
    page = (report / "index.html").read_text()
    assert "vs pgbench" in page and "DB connections given" in page and "via pgbouncer" in page


def test_claim_15_measured_https_against_http_in_every_case_over_tls(results, report):
    """Every run of claim 15 ran without an error: each route of the mode kept alive and with a
    new connection per request, over HTTP and HTTPS, and with resumption off. nginx's lab-only
    log shows each HTTPS run over TLS and each plain one not, a new connection for every request
    where asked, and every handshake full where resumption is off; each HTTPS run carries its
    ratios to HTTP, and every run what it cost nginx and wrk per request and what bound it."""
    from bench.claims.tls import NEW_CONNECTION, NO_RESUMPTION, RUNS

    record = next(e for e in results["experiments"] if e["claim"] == 15)
    mode = MODES["tiny"]
    wanted = {(route, kind, scheme, resumption) for route in mode.tls_routes for kind, scheme, resumption in RUNS}
    ran = [
        (r["settings"]["route"], r["settings"]["connection"], r["settings"]["scheme"],
         r["settings"].get("tls_resumption", ""))
        for r in record["runs"]
    ]  # fmt: skip
    assert sorted(ran) == sorted(wanted) * mode.peer_rounds
    for run in record["runs"]:
        where = f"claim 15: {run['label']}"
        scheme, new = run["settings"]["scheme"], run["settings"]["connection"] == NEW_CONNECTION
        check_run(run, where)
        assert run["errors"] == 0, where
        assert run["url"].startswith(f"{scheme}://127.0.0.1:"), where
        assert run["nginx_cpu_ms_per_request"] >= 0 and number(run["generator_cpu_ms_per_request"]), where
        assert run["bound_by"] and "tls-nginx" in run["server_cpu_cores_by"], where
        if scheme == "https":
            assert run["tls"].startswith("HTTP/1.1 over TLSv1."), where
            assert run["ratio_to_http"] > 0 and run["p99_ratio_to_http"] > 0, where
        else:
            assert run["tls"] == "HTTP/1.1" and "ratio_to_http" not in run, where
        if new:  # one connection for each request wrk counted, and the time opening it took
            assert run["connections_opened"] >= run["requests"] and number(run["connect_ms"]), where
        else:  # wrk's connections, and one more each time nginx closed one after 1000 requests
            assert run["connections_opened"] <= run["concurrency"] + run["requests"] // 1000 + 1, where
        if run["settings"].get("tls_resumption") == "off":
            assert run["tls_resumed"] == 0, where
    # nginx's CPU is read in clock ticks (10 ms): one paced second may not cost one; all do.
    assert sum(run["nginx_cpu_ms_per_request"] for run in record["runs"]) > 0
    assert record["chart"] == "tls" and record["ratio"] > 0
    page = (report / "index.html").read_text()
    assert "TLS handshakes full / resumed" in page and NO_RESUMPTION in page
    logs = report / "logs"
    assert (logs / "tls-nginx-connections.log").exists() or (logs / "tls-nginx-connections.log.gz").exists()


def test_the_database_path_measures_every_route_of_both_pools_against_the_references(results, report):
    """Every route of the mode, on both pools, for twinstack, the raw driver and SQLAlchemy used
    plainly, with no error; each row its CPU per request and sessions opened; the references
    keep their connections (no session opened while measured); one target per pool and route."""
    from bench import dbpath

    mode = MODES["tiny"]
    out = results["dbpath"]
    labels = [dbpath.LABELS[route] for route in mode.db_path_routes]
    for service in ("async", "sync"):
        pool = out["pools"][service]
        assert pool["concurrency"] == dbpath.CONCURRENCY[service]
        rows = {(r["route"], r["contender"]): r for r in pool["rows"]}
        assert set(rows) == {(label, x) for label in labels for x in (dbpath.TWINSTACK, dbpath.RAW, dbpath.PLAIN)}
        for row in rows.values():
            check_run(row, row["label"])
            assert row["errors"] == 0, row["label"]
            assert row["cpu_us_per_request"] > 0 and row["postgres_cpu_us_per_request"] >= 0, row["label"]
            assert len(row["cpu_us_rounds"]) == len(row["sessions_rounds"]) == mode.db_path_rounds
            assert row["raw_cpu_ratio"] > 0 and f"dbpath-{service}-" in " ".join(row["server_cpu_cores_by"])
            if row["contender"] != dbpath.TWINSTACK:
                assert row["sessions_opened"] == 0, row["label"]
        # PostgreSQL's CPU is read in clock ticks (10 ms): a paced second of reads may not cost
        # one, but the pool's runs together do.
        assert sum(row["postgres_cpu_us_per_request"] for row in rows.values()) > 0, service
    assert [t["key"] for t in out["targets"]] == [f"{s}-{r}" for s in ("async", "sync") for r in mode.db_path_routes]
    for target in out["targets"]:
        assert isinstance(target["measured"], float) and isinstance(target["met"], bool), target
    page = (report / "index.html").read_text()
    assert "The database path: twinstack against the raw driver" in page and "raw driver / this" in page


def test_curves_cover_every_configuration_and_level_with_limits(results):
    mode = MODES["tiny"]
    for kind, levels in (("io", mode.io_levels), ("cpu", mode.cpu_levels)):
        curve = results["curves"][kind]
        assert set(curve["series"]) == {"async", "sync", "gthread", "gevent"}
        for name, series in curve["series"].items():
            points = series["points"]
            assert [p["concurrency"] for p in points] == list(levels), (kind, name)
            for p in points:
                check_run(p, f"{kind} {name} c={p['concurrency']}")
                assert p["limits"]["bound_rps"] > 0
                # The server did the work: its CPU time was measured, not assumed.
                assert p["server_cpu_s"] > 0


def test_ceiling_proxy_static_and_peers_are_measured(results):
    check_run(results["ceiling"], "ceiling")
    kinds = {(r["pool"], r["path_kind"]) for r in results["proxy"]}
    for pool in ("async", "sync"):
        for kind in ("direct", "nginx, upstream keep-alive", "nginx, no upstream keep-alive", "twinstack nginx config"):
            assert (pool, kind) in kinds
    # gunicorn's sync worker closes every connection: keep-alive is shown on the gthread pool.
    assert {("gthread", "direct"), ("gthread", "nginx, upstream keep-alive")} <= kinds
    assert any(r["tool"] == "locust" for r in results["proxy"])
    assert len(results["static"]) == 4
    for r in results["proxy"] + results["static"]:
        check_run(r, r["label"])
    peers = {
        row["peer"]
        for group in results["peers"]["groups"].values()
        for workload in group.values()
        for row in workload["rows"]
    }
    assert {"uvicorn", "gunicorn-asgi", "granian-asgi", "gunicorn-defaults", "granian-wsgi"} <= peers
    assert {"twinstack async pool", "twinstack sync pool"} <= peers
    for group in results["peers"]["groups"].values():
        assert set(group) == {"io", "cpu"}
        for workload in group.values():
            assert sorted(r["rank"] for r in workload["rows"]) == list(range(1, len(workload["rows"]) + 1))
            for row in workload["rows"]:
                check_run(row, row["label"])
                # Every contender ran every round; its row is one of them.
                assert len(row["rounds_rps"]) == results["peers"]["rounds"] == MODES["tiny"].peer_rounds
                assert row["rps_low"] <= row["throughput_rps"] <= row["rps_high"]


def test_overhead_measures_each_piece_against_the_bare_app_and_names_what_binds(results, report):
    """The overhead experiment: per pool, the bare app, twinstack's app, each switch off in
    turn, all off, both through nginx (and uvicorn-worker's plain worker for the async pool);
    every ratio beside its target with what bound the run; waits against Little's law."""
    from bench import overhead

    out = results["overhead"]
    pieces = [f"twinstack, {piece} off" for piece in overhead.PIECES]
    common = {overhead.BARE, overhead.TWINSTACK, *pieces, overhead.ALL_OFF, overhead.THROUGH_NGINX,
              overhead.BARE_THROUGH_NGINX}  # fmt: skip
    for service, extra in (("async", {overhead.PLAIN_WORKER}), ("sync", set())):
        rows = {r["contender"]: r for r in out["pools"][service]["rows"]}
        assert set(rows) == common | extra, service
        for row in rows.values():
            check_run(row, row["label"])
            assert len(row["rounds_rps"]) == out["rounds"] == MODES["tiny"].peer_rounds
            assert set(row["server_cpu_cores_by"]) >= {f"twinstack-{service}"} or row["contender"] != "twinstack"
        assert rows[overhead.BARE]["ratio_to_bare"] == 1.0 and rows[overhead.TWINSTACK]["ratio_to_twinstack"] == 1.0
        assert rows[overhead.THROUGH_NGINX]["ratio_to_direct"] > 0
        assert "overhead-nginx" in rows[overhead.THROUGH_NGINX]["server_cpu_cores_by"]
    io = out["pools"]["async"]["io"]
    judged = [(r["delay_ms"], r["concurrency"]) for r in io if r["staggered"]]
    assert judged == list(MODES["tiny"].overhead_io)
    # The last point once more with every connection starting at once (wrk's default), to compare.
    assert [(r["delay_ms"], r["concurrency"]) for r in io if not r["staggered"]] == judged[-1:]
    for run in io:
        check_run(run, run["label"])
        assert run["little_rps"] == run["concurrency"] * 1000 / run["delay_ms"]
        # No run beats Little's law (how close it comes is a timing: make bench reports it).
        assert 0 < run["little_ratio"] <= 1.05, run
    io_keys = [f"io-{d}ms-c{c}" for d, c in MODES["tiny"].overhead_io]
    health_keys = ["async-vs-bare", "sync-vs-bare", "async-nginx", "sync-nginx"]
    assert [t["key"] for t in out["targets"]] == [*health_keys, *io_keys]
    for target in out["targets"]:
        assert isinstance(target["measured"], float) and isinstance(target["met"], bool), target
        assert target["binds"].startswith(("the box's CPUs", "the load generator", "no CPU was saturated")), target
    page = (report / "index.html").read_text()
    assert "Overhead: what twinstack" in page and "what bound the run" in page


def test_the_machine_and_every_component_version_are_recorded(results):
    machine = results["machine"]
    assert machine["cpus"] >= 1 and machine["memory_gib"] > 0
    for component in ("python", "nginx", "wrk", "gunicorn", "uvicorn", "fastapi", "flask", "granian", "locust"):
        assert machine["versions"][component] not in ("", "unknown", "not installed"), component
    assert isinstance(results["cpu_layout"]["pinned"], bool)


def test_the_report_is_one_self_contained_page_with_the_verdicts_first(report, results):
    page = (report / "index.html").read_text()
    # Self-contained: no script, no stylesheet or image fetched from anywhere.
    assert "<script" not in page
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)
    assert page.count("<svg") >= 8
    verdicts = page.index("<h2>Verdicts</h2>")
    assert verdicts < page.index("id='claim-1'")
    # The box's ceiling is the first row of the verdict table.
    table = page[verdicts:]
    first_row = table[table.index("<tr", table.index("</tr>")) :]
    assert first_row.startswith('<tr class="ceiling">')
    for e in results["experiments"]:
        assert f"id='claim-{e['claim']}'" in page
    for section in ("Curves", "nginx in front", "Static files", "Peers"):
        assert section in page


def test_two_runs_compare_as_ratios(report):
    result = subprocess.run(
        ["make", "-s", "bench-compare", str(report), str(report / "results.json")],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    rows = [line for line in result.stdout.splitlines() if line.startswith("curve io | async")]
    assert rows and all(line.count("1.00x") == 2 for line in rows)
    # The report can be rebuilt from its raw figures alone.
    rebuilt = subprocess.run([sys.executable, "-m", "bench", "report", str(report)], cwd=ROOT, capture_output=True)
    assert rebuilt.returncode == 0 and (report / "index.html").exists()


def test_a_run_where_an_experiment_crashed_still_writes_its_report_and_exits_1(results, tmp_path, monkeypatch, capsys):
    import bench.__main__ as cli
    from bench import lab, load
    from bench.records import Results

    broken = json.loads(json.dumps(results))
    for e in broken["experiments"]:
        if e["claim"] in (3, 5, 6, 9):  # the ones with charts of their own
            e.update(runs=[], verdict="inconclusive", reason="claim failed: LabError: sync exited", chart=e["chart"])
    broken.update(proxy=[], static=[], failures=["claim 3/9 failed: LabError: sync exited", "proxy failed: boom"])

    class CrashedLab:
        def __init__(self, *args, **kwargs) -> None:
            pass

        def run(self) -> Results:
            return Results.model_validate(broken)

    monkeypatch.setattr(lab, "Lab", CrashedLab)
    monkeypatch.setattr(load, "wrk_binary", lambda: "wrk")
    assert cli.main(["run", "--mode", "tiny", "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "2 part(s) of the lab could not run" in err and "proxy failed: boom" in err
    page = (tmp_path / "index.html").read_text()
    assert "proxy failed: boom" in page and "id='claim-3'" in page
    assert json.loads((tmp_path / "results.json").read_text())["failures"] == broken["failures"]


def test_a_wsgi_app_answers_the_websocket_handshake_but_cannot_hold_it(results):
    claim = next(e for e in results["experiments"] if e["claim"] == 11)
    attempt = next(r for r in claim["runs"] if r["label"].startswith("WSGI app"))
    assert attempt["handshakes"] == attempt["requests"] > 0 and attempt["opened"] == 0
    held = next(r for r in claim["runs"] if r["label"].startswith("async"))
    assert held["opened"] == held["handshakes"] == MODES["tiny"].websockets
