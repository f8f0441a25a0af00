"""Claim 13's pieces without a server: the verdict over budgets and rounds, what the raw-driver
rows say beside it, what bound a run, pgbench's report and logs read back, and the statement
pgbench runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.claims.queries import Contender, _record, compare, layers
from bench.database import pgbench_script, seed_id
from bench.load import pgbench_latencies, pgbench_summary
from bench.verdicts import bound_by
from tests.bench.fakes import SYNC, run

PGBENCH_REPORT = """pgbench (15.15 (Debian 15.15-0+deb12u1))
transaction type: /tmp/script.sql
scaling factor: 1
query mode: prepared
number of clients: 5
number of threads: 2
maximum number of tries: 1
duration: 1 s
number of transactions actually processed: 51658
number of failed transactions: 3 (0.006%)
latency average = 0.097 ms
initial connection time = 4.170 ms
tps = 51640.123456 (without initial connection time)
"""


def test_pgbench_report_gives_the_transactions_the_failures_and_the_rate():
    assert pgbench_summary(PGBENCH_REPORT) == (51658, 3, 51640.123456)
    # pgbench before 15 has no failed line: none failed.
    assert pgbench_summary(PGBENCH_REPORT.replace("number of failed transactions: 3 (0.006%)\n", "")) == (
        51658, 0, 51640.123456,
    )  # fmt: skip
    assert pgbench_summary("pgbench: error: connection to server failed") is None


def test_pgbench_logs_give_every_latency_and_skip_failed_transactions(tmp_path: Path):
    (tmp_path / "tx.1").write_text("0 0 250 0 1700000000 1\n0 1 1500 0 1700000000 2\n")
    (tmp_path / "tx.1.1").write_text("1 0 failed 0 1700000000 3\n1 1 80 0 1700000000 4\n\n")
    assert sorted(pgbench_latencies(tmp_path.glob("tx.*"))) == [0.08, 0.25, 1.5]


def test_the_pgbench_statement_is_the_one_get_orders_runs_for_a_seeded_id():
    script = pgbench_script(100_000)
    first, statement = script.split("\n", 1)
    assert first == "\\set n random(1, 100000)"
    assert statement.startswith("SELECT orders.id, orders.sku") and "FROM orders" in statement
    assert "WHERE orders.id = md5('twinstack-lab-' || :n)::uuid;" in statement
    # The ids wrk asks for are the ones the seed makes: the UUID of md5(prefix || i).
    assert str(seed_id(1)) == "b0e8bff3-ae83-9aa4-13b9-9c463e58c3bd"


@pytest.mark.parametrize(
    ("fields", "said"),
    [
        ({"generator_saturated": True}, "the load generator"),
        ({"box_saturated": True}, "the box's CPUs"),
        ({"box_cpu_utilisation": 0.9}, "the box's CPUs, 90% busy"),
        ({"server_cpu_cores_by": {"postgres": 1.9}}, "PostgreSQL's CPU"),
        ({"server_cpu_cores_by": {"postgres": 1.0, "pgbouncer": 0.9}}, "PostgreSQL's CPU"),
        ({"server_cpu_cores_by": {"q-sync": 1.5, "q-sync-nginx": 0.4}}, "the app's CPU"),
        ({"server_cpu_cores_by": {"q-sync": 0.5, "postgres": 0.2}}, "nothing saturated"),
    ],
)
def test_what_bound_a_run_is_named_from_what_it_measured(fields, said):
    said_by = bound_by(run(**fields), ["q-sync", "q-sync-nginx"], workers=5, connections=5, cores=2)
    assert said_by.startswith(said)
    assert "PostgreSQL" in said_by and "generator" in said_by  # the figures behind it, always


@pytest.mark.parametrize(
    ("a", "b", "outcome"),
    [
        ([120, 130, 125], [100, 105, 110], "faster"),
        ([90, 92, 91], [100, 105, 110], "slower"),
        ([120, 100, 125], [100, 105, 110], "a tie"),  # one round of async did not beat sync's best
        ([103, 104, 104], [100, 101, 102], "a tie"),  # every round ahead, but within the noise
    ],
)
def test_one_side_is_ahead_only_when_every_round_beat_every_round_of_the_other(a, b, outcome):
    assert compare(a, b)[1] == outcome


def _contender(
    name: str, service: str, connections: int, rps: list[float], pooled: bool = False, twin: str = "", **fields
) -> Contender:
    c = Contender(name, service, connections, f"{connections}: {name}", pooled=pooled, raw=bool(twin), twin=twin)
    settings = SYNC if service == "sync" else {"workers": 2}
    c.runs = [
        run(
            x,
            c=16,
            settings={**settings, "round": i + 1},
            family=name,
            bound_by="the box's CPUs",
            database_ratio=x / 5000,
            **fields,
        )
        for i, x in enumerate(rps)
    ]
    return c


def _entries(
    async_rps: dict[str, list[float]], pooled: bool = True, raw: bool = True, **raw_fields
) -> tuple[list[Contender], dict]:
    entries = [
        _contender("q-sync", "sync", 5, [100, 100, 100]),
        _contender("q-async-2", "async", 4, async_rps["fewer"]),
        _contender("q-async-3", "async", 6, async_rps["more"]),
    ]
    if raw:  # the raw driver: twice twinstack's sync, async a little ahead of its own sync
        entries += [
            _contender("q-sync-raw", "sync", 5, [200, 200, 200], twin="q-sync", **raw_fields),
            _contender("q-async-raw-2", "async", 4, [180, 181, 179], twin="q-async-2", **raw_fields),
            _contender("q-async-raw-3", "async", 6, [250, 251, 249], twin="q-async-3", **raw_fields),
        ]
    if pooled:
        entries += [
            _contender("q-sync-pgbouncer", "sync", 5, [90, 90, 90], pooled=True),
            _contender("q-async-pgbouncer", "async", 5, async_rps["pooled"], pooled=True),
        ]
    pgbench = {n: _contender(f"pgbench-{n}", "pgbench", n, [5000, 5000, 5000]) for n in (4, 5, 6)}
    return entries + list(pgbench.values()), pgbench


def test_claim_13_holds_only_where_async_is_ahead_at_every_budget():
    ahead = {"fewer": [120, 121, 122], "more": [130, 131, 129], "pooled": [110, 111, 109]}
    entries, pgbench = _entries(ahead)
    record = _record(16, entries, pgbench, pooled=True)
    assert record.verdict == "holds", record.reason
    assert record.yardstick.value == 5000 and record.measured.value == 110
    assert record.ratio == pytest.approx(110 / 5000, rel=1e-3)
    # Every budget is named in the reason, the equal one (through pgbouncer) first.
    assert record.reason.startswith("through pgbouncer, both with 5 vs 5 server connections")
    assert "direct with 4 vs 5" in record.reason and "direct with 6 vs 5" in record.reason
    assert {r.family for r in record.runs} >= {"q-sync", "q-async-pgbouncer", "pgbench-5"}

    behind = {**ahead, "fewer": [90, 91, 89]}
    entries, pgbench = _entries(behind)
    record = _record(16, entries, pgbench, pooled=True)
    assert record.verdict == "does not hold"
    assert "direct with 4 vs 5 server connections" in record.reason and "slower" in record.reason


def test_claim_13_without_pgbouncer_says_only_the_direct_budgets_were_measured():
    entries, pgbench = _entries({"fewer": [120, 121, 122], "more": [130, 131, 129]}, pooled=False)
    record = _record(16, entries, pgbench, pooled=False)
    assert record.reason.startswith("direct with 4 vs 5")
    assert "pgbouncer could not run" in record.reason


@pytest.mark.parametrize(("async_n", "sync_n"), [(1, 3), (2, 5), (4, 9), (8, 17)])
def test_claim_12_names_the_largest_pool_the_budget_check_lets_start(async_n, sync_n):
    """Claim 12 says how far raising the pool goes before max_connections binds: the number
    it names is the last one twinstack_db.budget accepts."""
    from bench.claims.database import most_per_worker
    from twinstack_db import budget
    from twinstack_db.settings import AsyncDbPool, SyncDbPool

    most = most_per_worker(async_n, sync_n)
    sync = budget.PoolBudget("sync", sync_n, SyncDbPool.model_construct())

    def pools(per_worker: int) -> list[budget.PoolBudget]:
        limits = AsyncDbPool.model_construct(pool_size=per_worker)
        return [budget.PoolBudget("async", async_n, limits), sync]

    budget.check(pools(most), 100)
    with pytest.raises(budget.BudgetError):
        budget.check(pools(most + 1), 100)


def test_claim_13_says_what_the_serving_model_changes_and_what_the_library_layer_costs():
    """The raw driver on both sides is the serving model alone; twinstack against the raw driver
    on the same model and connections is the library layer."""
    ahead = {"fewer": [120, 121, 122], "more": [130, 131, 129], "pooled": [110, 111, 109]}
    entries, pgbench = _entries(ahead, server_cpu_s=1.0, server_cpu_cores_by={"q-sync-raw": 1.0})
    record = _record(16, entries, pgbench, pooled=True)
    reason = record.reason
    model = reason[reason.index("What the serving model changes") : reason.index("What the library layer costs")]
    assert "with 4 vs 5 connections, async / sync 0.90 (180 vs 200 req/s): slower" in model
    assert "with 6 vs 5 connections, async / sync 1.25 (250 vs 200 req/s): faster" in model
    library = reason[reason.index("What the library layer costs") :]
    assert library.index("async with 4 connections") < library.index("async with 6") < library.index("sync with 5")
    assert "async with 4 connections, twinstack / raw driver 0.67 (121 vs 180 req/s): slower" in library
    assert "sync with 5 connections, twinstack / raw driver 0.50 (100 vs 200 req/s): slower" in library
    assert "the pool's CPU a request 0 vs 5000 µs" in library  # 1 CPU second over 200 responses, the raw pool's
    # The raw-driver rows are shown beside the others; twinstack's own rows decide.
    assert record.verdict == "holds" and {"q-sync-raw", "q-async-raw-2"} <= {r.family for r in record.runs}
    assert "beside each direct budget, the same route on the raw driver" in record.what


def test_the_raw_driver_rows_never_decide_claim_13():
    ahead = {"fewer": [120, 121, 122], "more": [130, 131, 129], "pooled": [110, 111, 109]}
    entries, pgbench = _entries(ahead, generator_saturated=True)  # only the raw driver's runs are untrustworthy
    assert _record(16, entries, pgbench, pooled=True).verdict == "holds"


def test_claim_13_without_the_raw_driver_says_the_layers_were_not_told_apart():
    entries, pgbench = _entries({"fewer": [120, 121, 122], "more": [130, 131, 129], "pooled": [110]}, raw=False)
    assert "The raw-driver apps were not measured" in _record(16, entries, pgbench, pooled=True).reason
    by = {c.name: c for c in _entries({"fewer": [1], "more": [1], "pooled": [1]})[0]}
    del by["q-sync-raw"]  # the raw sync app did not start: no serving model, the library layer still said
    said = layers(by)
    assert "serving model changes (the raw driver on both sides, direct): not measured" in said
    assert "async with 4 connections, twinstack / raw driver" in said
