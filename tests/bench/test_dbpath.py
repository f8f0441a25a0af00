"""The database-path experiment's pieces without a server: the CPU a request and the sessions a
run opened, read off what it measured; the raw driver's ratio and its target; the rows and the
record, read back and drawn; and the whole experiment on a stand-in lab in quick mode."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import pytest

from bench import dbpath, registry
from bench.compare import load, write
from bench.dbpath import PLAIN, RAW, TARGET, TWINSTACK, Contender
from bench.modes import MODES
from bench.procs import LabError, Server
from bench.records import DbPath, DbPathPool, DbPathRow
from bench.registry import Phase
from bench.report import render
from tests.bench.fakes import FakeLab, results, run


def test_the_experiment_is_registered_and_fills_its_own_section():
    order = {exp.id: exp for exp in registry.load()}
    exp = order["dbpath"]
    assert exp.phase == Phase.EDGE and not exp.claims and not exp.needs
    assert exp.run is dbpath.dbpath
    # What it returns when it cannot run: an empty section, which the page says was not measured.
    assert registry.section_default("dbpath") == DbPath()
    assert "Not measured in this run" in render(results())[render(results()).index("id='dbpath'") :]


@pytest.mark.parametrize(
    ("before", "after", "opened"),
    [
        (10, 11, 0),  # only the reading after the run: its own connection
        (10, 14, 3),
        (10, 10, 0),  # the reading's own session not counted yet: never below zero
        (0, 1, 0),
    ],
)
def test_the_sessions_a_run_opened_leave_the_readings_own_connection_out(before, after, opened):
    assert dbpath.opened(before, after) == opened


def test_the_sessions_counter_is_read_from_the_labs_database(monkeypatch):
    """One connection of its own, the counter of the database it is connected to."""
    seen = []

    class Conn:
        def __init__(self, url: str, autocommit: bool) -> None:
            seen.append((url, autocommit))

        def __enter__(self):
            return self

        def __exit__(self, *exc: object) -> None:
            pass

        def execute(self, query: str):
            seen.append(query)
            return type("Cursor", (), {"fetchone": lambda self: (42,)})()

    monkeypatch.setattr(dbpath.psycopg, "connect", Conn)
    assert dbpath.sessions("postgresql://lab@127.0.0.1:9/postgres") == 42
    assert seen[0] == ("postgresql://lab@127.0.0.1:9/postgres", True)
    assert "pg_stat_database" in seen[1] and "current_database()" in seen[1]


def test_cpu_per_request_is_a_servers_share_of_the_cpu_over_the_responses_served():
    # 2 CPU seconds over 2 000 good responses (1 000 req/s for 2 s): the pool used 3/4 of them.
    measured = run(1000.0, duration_s=2.0, server_cpu_s=2.0, server_cpu_cores_by={"pool": 0.75, "postgres": 0.25})
    assert dbpath.cpu_us_per_request(measured, ["pool"]) == 750.0
    assert dbpath.cpu_us_per_request(measured, ["postgres"]) == 250.0
    assert dbpath.cpu_us_per_request(measured, ["pool", "postgres"]) == 1000.0
    # Errors are not served: the same CPU over fewer good responses costs more a request.
    assert dbpath.cpu_us_per_request(measured.model_copy(update={"throughput_rps": 500.0}), ["pool"]) == 1500.0
    assert dbpath.cpu_us_per_request(run(0.0, server_cpu_s=1.0, server_cpu_cores_by={"pool": 1.0}), ["pool"]) == 0.0
    assert dbpath.cpu_us_per_request(run(1000.0), ["pool"]) == 0.0  # no CPU measured


def test_each_route_makes_its_requests_with_its_own_script(tmp_path):
    ids = tmp_path / "ids.txt"
    assert dbpath.script("get", ids) == (dbpath.WRK_ORDERS, [str(ids)])
    assert dbpath.script("post", ids) == (dbpath.WRK_POST, [])
    assert dbpath.script("list", ids) is None
    first, second = dbpath.script("post-key", ids), dbpath.script("post-key", ids)
    assert first[1][0] == "key" and first[1][1] != second[1][1]  # a new token each run: keys never repeat
    assert dbpath.WRK_ORDERS.exists() and dbpath.WRK_POST.exists()
    assert set(MODES["full"].db_path_routes) == {key for key, _, _ in dbpath.ROUTES}
    for mode in MODES.values():
        assert set(mode.db_path_routes) <= set(dbpath.LABELS)


def test_quick_mode_keeps_the_experiment_to_about_a_minute_of_load():
    assert dbpath.planned_s(MODES["quick"]) <= 60
    assert dbpath.planned_s(MODES["tiny"]) < dbpath.planned_s(MODES["quick"]) < dbpath.planned_s(MODES["full"])


def contender(label: str, cpu: dict[str, list[float]], rps: float = 1000.0, sessions: int = 0) -> Contender:
    x = Contender(label, Server(f"dbpath-{label}", [], 9, {}))
    for route, figures in cpu.items():
        x.runs[route] = [run(rps + i, c=32, label=f"{label} {route}") for i in range(len(figures))]
        x.cpu[route] = figures
        x.postgres[route] = [100.0] * len(figures)
        x.sessions[route] = [sessions] * len(figures)
    return x


def test_rows_carry_the_median_cpu_of_their_rounds_and_the_raw_drivers_ratio():
    contenders = [
        contender(TWINSTACK, {"get": [500.0, 400.0, 900.0], "list": [800.0]}, sessions=2),
        contender(RAW, {"get": [300.0, 200.0, 250.0], "list": [600.0]}),
        contender(PLAIN, {"get": [1000.0, 1000.0, 1000.0]}),  # failed on the list: no row there
    ]
    rows = dbpath.rows("async", contenders, ["get", "list"])
    assert [(r.route, r.contender) for r in rows] == [
        ("GET /orders/{id}", TWINSTACK), ("GET /orders/{id}", RAW), ("GET /orders/{id}", PLAIN),
        ("GET /orders?limit=20", TWINSTACK), ("GET /orders?limit=20", RAW),
    ]  # fmt: skip
    twinstack, raw, plain = rows[:3]
    assert twinstack.cpu_us_per_request == 500.0 and twinstack.cpu_us_rounds == [500.0, 400.0, 900.0]
    assert twinstack.sessions_opened == 6 and twinstack.sessions_rounds == [2, 2, 2]
    assert twinstack.raw_cpu_ratio == 0.5 and raw.raw_cpu_ratio == 1.0 and plain.raw_cpu_ratio == 0.25
    assert twinstack.rounds_rps == [1000.0, 1001.0, 1002.0] and twinstack.throughput_rps == 1001.0
    assert twinstack.pool == "async" and rows[3].raw_cpu_ratio == 0.75


def row(contender: str, cpu: float, route: str = "GET /orders/{id}", ratio: float | None = None) -> DbPathRow:
    return run(1000.0, box_cpu_utilisation=0.99).extended(
        DbPathRow, pool="async", route=route, contender=contender, cpu_us_per_request=cpu, cpu_us_rounds=[cpu],
        postgres_cpu_us_per_request=90.0, sessions_opened=0, sessions_rounds=[0], rounds_rps=[1000.0],
        rps_low=1000.0, rps_high=1000.0, raw_cpu_ratio=ratio,
    )  # fmt: skip


def test_each_target_is_the_raw_drivers_cpu_over_twinstacks_on_one_route_of_one_pool():
    rows = [row(TWINSTACK, 500.0), row(RAW, 300.0), row(PLAIN, 900.0)]
    rows += [row(TWINSTACK, 600.0, "POST /orders"), row(RAW, 250.0, "POST /orders")]
    pools = {
        "async": DbPathPool(concurrency=32, workers=2, reference_connections=10, rows=rows),
        # The sync pool's twinstack did not start: its targets are not measured, not failed.
        "sync": DbPathPool(concurrency=10, workers=5, reference_connections=1, rows=[row(RAW, 300.0)]),
    }
    by = {t.key: t for t in dbpath.targets(pools, ["get", "post", "list"])}
    assert list(by) == ["async-get", "async-post", "async-list", "sync-get", "sync-post", "sync-list"]
    get = by["async-get"]
    assert get.target == TARGET and get.measured == 0.6 and get.met  # exactly at the target is met
    assert "twinstack 500 µs, raw driver 300 µs, SQLAlchemy Core, plainly 900 µs" in get.figures
    assert get.binds.startswith("the box's CPUs (99% busy)")
    assert by["async-post"].measured == pytest.approx(0.4167) and by["async-post"].met is False
    for key in ("async-list", "sync-get"):
        assert by[key].measured is None and by[key].met is None and by[key].binds.startswith("not measured")


def test_the_record_is_written_read_back_and_drawn_as_a_table_and_a_chart(tmp_path):
    rows = [row(TWINSTACK, 500.0, ratio=0.6), row(RAW, 300.0, ratio=1.0), row(PLAIN, 900.0, ratio=0.3333)]
    pools = {"async": DbPathPool(concurrency=32, workers=2, reference_connections=10, rows=rows)}
    section = DbPath(rounds=3, duration_s=3, pools=pools, targets=dbpath.targets(pools, ["get"]))
    written = results(dbpath=section)
    write(written, tmp_path)
    assert load(tmp_path) == written
    assert json.loads((tmp_path / "results.json").read_text())["dbpath"]["pools"]["async"]["rows"][0]["contender"] == (
        TWINSTACK
    )
    page = render(written)
    part = page[page.index("id='dbpath'") : page.index("<h2>nginx in front")]
    assert "1 of 2 targets met" in part and "Database-path targets: 1 of 2 met" in page
    assert "<svg" in part and "CPU µs / req" in part and "raw driver / this" in part and "0.60x" in part
    assert "async pool: c=32, 2 workers; the references keep 10 connection(s) a worker" in part


class DbLab(FakeLab):
    """A stand-in lab for the experiment: pools that are never started, a database whose
    session counter moves by one a reading (the reading's own), canned runs in order."""

    def __init__(self, runs, scratch) -> None:
        super().__init__(runs)
        self.mode = MODES["quick"]
        self.scratch = scratch
        self.database = self
        self.url = "postgresql://lab@127.0.0.1:9/postgres"
        self.server = Server("postgres", [], 9, {})
        self.servers = self
        self.started: list[str] = []
        self.seeded = 0

    def seed(self, rows: int, ids) -> None:
        self.seeded += 1
        ids.write_text(f"{uuid.uuid4()}\n")

    def pool(self, name: str, service: str, *, app: str | None = None, env=None, **kwargs) -> Server:
        workers = 2 if service == "async" else 5
        settings = {"server": "gunicorn", "workers": workers, **({"app": app} if app else {})}
        return Server(name, [], 9, dict(env or {}), settings=settings)

    def start_each(self, *servers: Server) -> dict[str, LabError]:
        self.started += [s.name for s in servers]
        return {}

    def stop(self, *servers: Server) -> None:
        pass


def test_it_runs_every_route_of_both_pools_in_quick_mode_on_a_stand_in_lab(monkeypatch, tmp_path):
    mode = MODES["quick"]
    routes = len(mode.db_path_routes)
    per_pool = 3 + mode.db_path_rounds * routes * 3  # a warm-up each, then each round of each route
    counter = iter(range(0, 1000, 1))
    monkeypatch.setattr(dbpath, "sessions", lambda url: next(counter))
    canned = [
        run(1000.0, c=32, server_cpu_s=1.0, server_cpu_cores_by={"pool": 0.5, "postgres": 0.1})
        for _ in range(2 * per_pool)
    ]
    lab = DbLab(canned, tmp_path)
    out = dbpath.dbpath(lab)
    assert lab.seeded == 1 and not lab.runs and not lab.failures
    assert set(out.pools) == {"async", "sync"} and out.rounds == mode.db_path_rounds
    assert len(lab.started) == 6
    for service, pool in out.pools.items():
        assert pool.concurrency == dbpath.CONCURRENCY[service]
        assert pool.reference_connections == dbpath.CONNECTIONS[service]
        assert len(pool.rows) == routes * 3
        for r in pool.rows:
            assert r.sessions_opened == 0  # every reading after a run counted itself only
            assert r.label == f"{service} {r.contender}: {r.route}"
    assert [t.key for t in out.targets] == [f"{s}-{r}" for s in ("async", "sync") for r in mode.db_path_routes]
    # The ids claim 13 left are used as they are: seeded once.
    dbpath.dbpath(DbLab([run(c=32) for _ in range(2 * per_pool)], tmp_path))
    assert lab.seeded == 1


def test_the_references_get_their_apps_and_connections_on_the_pools_own_configuration(tmp_path):
    lab = DbLab([], tmp_path)
    for service in ("async", "sync"):
        contenders = {x.label: x.server for x in dbpath._contenders(lab, service)}
        assert list(contenders) == [TWINSTACK, RAW, PLAIN]
        assert "app" not in contenders[TWINSTACK].settings  # twinstack's own app, its own settings
        assert contenders[TWINSTACK].env == {}
        for label in (RAW, PLAIN):
            assert contenders[label].settings["app"] == dbpath.APPS[label][service]
            assert contenders[label].env["TWINSTACK_BENCH_DB_POOL_SIZE"] == str(dbpath.CONNECTIONS[service])


def test_a_contender_whose_run_fails_is_reported_and_not_run_there_again(monkeypatch, tmp_path):
    monkeypatch.setattr(dbpath, "sessions", lambda url: 0)
    lab = DbLab([], tmp_path)

    def wrk(label, *args, **kwargs):
        raise LabError("wrk failed (1)")

    lab.wrk = wrk
    x = Contender(RAW, Server("dbpath-async-raw", [], 9, {}))
    dbpath._measure(lab, x, "async", "get", 32, 1, tmp_path / "ids", lab.server)
    dbpath._measure(lab, x, "async", "get", 32, 2, tmp_path / "ids", lab.server)
    assert lab.failures == ["database path: async raw driver on GET /orders/{id} failed: wrk failed (1)"]
    assert x.failed == {"get"} and not x.runs


def test_the_references_answer_pages_as_twinstack_does():
    from bench.db_apps import order, page

    rows = [
        {"id": uuid.UUID(int=i), "sku": "LAB-1", "quantity": 2, "unit_price_cents": 450, "total_cents": 900,
         "customer_email": "ada@example.com", "created_at": datetime(2026, 1, 1, tzinfo=UTC)}
        for i in range(3)
    ]  # fmt: skip
    assert set(order(rows[0])) == {
        "order_id", "sku", "quantity", "unit_price_cents", "total_cents", "customer_email", "created_at", "served_by",
    }  # fmt: skip
    full = page(rows, 2)  # limit + 1 rows fetched: there is a next page
    assert [o["order_id"] for o in full["orders"]] == [str(uuid.UUID(int=0)), str(uuid.UUID(int=1))]
    assert full["next_after"] == str(uuid.UUID(int=1))
    assert page(rows[:2], 2)["next_after"] is None


def test_only_runs_the_experiments_named_and_those_whose_sections_they_take():
    order = registry.load()
    assert [exp.id for exp in registry.select(order, ["dbpath"])] == ["dbpath"]
    assert [exp.id for exp in registry.select(order, ["claim-2", "dbpath"])] == ["curves", "claim-2", "dbpath"]
    assert registry.select(order, []) == order
    with pytest.raises(registry.RegistryError, match="no experiment 'nonesuch'"):
        registry.select(order, ["dbpath", "nonesuch"])
