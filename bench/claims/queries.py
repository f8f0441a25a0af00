"""Claim 13: async is faster than sync for database queries, measured with its controls named.

Each request of ``GET /orders/{id}`` is one indexed read of a table of at least 100 000 orders
(ids spread at random, each request picking one: bench/wrk_orders.lua), through twinstack's
nginx, on each serving model at the worker count twinstack deploys on this machine: sync with
2 x cores + 1 workers, async with one worker a core. What a comparison of the two is worth
depends on the database connections each side was allowed, so every row carries its budget:

- direct to PostgreSQL, sync's workers are its connections (a sync worker runs one query at a
  time, so one connection each); an async pool's connections are ``workers x pool_size``,
  which cannot equal an odd number of sync workers on an even number of async ones, so async
  runs once with the nearest budget below and once with the nearest above;
- through pgbouncer (transaction pooling, Debian's package; the lab's runs only), both models
  share exactly the same number of server connections, however many client connections their
  workers keep.

Beside each direct budget, the same route on the raw driver (bench/db_apps.py: psycopg 3 and
its pool, hand-written SQL, as many connections a worker) on the same gunicorn.conf.py, workers
and nginx: the raw-driver async app against the raw-driver sync app is what the serving model
changes with no library in between; twinstack against the raw driver, same model and
connections, is what twinstack's library layer costs. The verdict says both; only twinstack's
own rows decide it.

The yardstick is the database's own limit on this box: pgbench running the same statement
(compiled from the same table, bench/database.py) on as many connections, prepared as psycopg
prepares it. Every contender, pgbench included, runs several rounds in a random order that
changes each round, so a drift of the machine is shared out. The claim holds only where async
answered more than sync in every round, by more than the noise, at every budget.
"""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from twinstack_runtime.ports import free_port
from twinstack_runtime.serving import async_workers, sync_workers

from ..database import SEED_ROWS, Activity, Pgbouncer, pgbench_script
from ..dbpath import cpu_us_per_request
from ..procs import LabError, Server
from ..records import ClaimRecord, Run
from ..registry import Context, experiment
from ..verdicts import NOISE, bound_by, claim_record, decide
from .database import pool_env

WRK_ORDERS = Path(__file__).parent.parent / "wrk_orders.lua"
# Client connections each async worker keeps to pgbouncer: more than the server connections
# behind it, so the pooler, not the worker's pool, is what limits them.
POOLED_ASYNC_CONNECTIONS = 10
# The raw-driver apps (bench/db_apps.py) and the variable that gives each worker its connections.
RAW_APPS = {"async": "bench.db_apps:fastapi_raw()", "sync": "bench.db_apps:flask_raw()"}
RAW_CONNECTIONS = "TWINSTACK_BENCH_DB_POOL_SIZE"


@dataclass
class Contender:
    name: str
    service: str  # async, sync, or pgbench
    connections: int  # server connections it may use
    budget: str
    servers: list[Server] = field(default_factory=list)
    """What it loads: nginx and the pool (and pgbouncer), or nothing but PostgreSQL."""
    url: str = ""
    pooled: bool = False
    raw: bool = False
    """The raw-driver app, not twinstack's (a reference: it does not decide the claim)."""
    twin: str = ""
    """The raw driver's: the name of twinstack's contender with the same model and connections."""
    runs: list[Run] = field(default_factory=list)

    @property
    def title(self) -> str:
        return f"{self.service}{' raw driver' if self.raw else ''}, {self.budget}"


def _stack(lab: Context, c: Contender, workers: int, per_worker: int, database: dict[str, str]) -> None:
    """The contender's pool and an nginx of twinstack's configuration in front of it, which lets
    every client of the run in: the sync pool's in-flight limit (10 x its workers by default)
    would otherwise answer the clients beyond it with 503 at once, and the run would measure
    nginx shedding load instead of the pool serving it. A raw-driver contender runs its app on
    the same pool's configuration, ``per_worker`` connections a worker."""
    prefix = c.service.upper()
    env = pool_env(prefix, per_worker, **database)
    if c.raw:
        env[RAW_CONNECTIONS] = str(per_worker)
    pool = lab.pool(c.name, c.service, workers=workers, env=env, app=RAW_APPS[c.service] if c.raw else None)
    port = free_port()
    nginx = lab.render_nginx(
        f"{c.name}-nginx",
        None,
        port,
        {
            "TWINSTACK_HTTP_PORT": str(port),
            "TWINSTACK_NGINX_STATUS_LISTEN": f"127.0.0.1:{free_port()}",
            # Only /<service>/ is loaded: both upstreams are this pool.
            "TWINSTACK_ASYNC_UPSTREAM": f"127.0.0.1:{pool.port}",
            "TWINSTACK_SYNC_UPSTREAM": f"127.0.0.1:{pool.port}",
            "TWINSTACK_WEB_ROOT_COPY": "false",
            "TWINSTACK_SYNC_MAX_INFLIGHT": str(lab.mode.query_concurrency),
        },
    )
    c.servers = [nginx, pool]
    c.url = f"http://127.0.0.1:{port}/{c.service}/orders/"


def contenders(lab: Context, bouncer: Pgbouncer | None) -> list[Contender]:
    n = lab.cores
    sync_n, async_n = sync_workers(n), async_workers(n)
    budget = sync_n
    out = []
    for raw in (False, True):
        c = Contender(f"q-sync{'-raw' if raw else ''}", "sync", budget, f"{budget}: {sync_n} workers x 1", raw=raw,
                      twin="q-sync" if raw else "")  # fmt: skip
        _stack(lab, c, sync_n, 1, {})
        out.append(c)
        for per_worker in sorted({budget // async_n, -(-budget // async_n)} - {0}):
            connections = async_n * per_worker
            name = f"q-async-{'raw-' if raw else ''}{per_worker}"
            c = Contender(name, "async", connections, f"{connections}: {async_n} workers x {per_worker}", raw=raw,
                          twin=f"q-async-{per_worker}" if raw else "")  # fmt: skip
            _stack(lab, c, async_n, per_worker, {})
            out.append(c)
    if bouncer is not None:
        via = {"TWINSTACK_DATABASE_URL": bouncer.url, "TWINSTACK_DB_PREPARED_STATEMENTS": "false"}
        for service, workers, per_worker in (("sync", sync_n, 1), ("async", async_n, POOLED_ASYNC_CONNECTIONS)):
            c = Contender(
                f"q-{service}-pgbouncer", service, bouncer.pool_size,
                f"{bouncer.pool_size} via pgbouncer: {workers} workers x {per_worker} client connections",
                pooled=True,
            )  # fmt: skip
            _stack(lab, c, workers, per_worker, via)
            c.servers.append(bouncer.server)
            out.append(c)
    for connections in sorted({c.connections for c in out}):
        out.append(Contender(f"pgbench-{connections}", "pgbench", connections, f"{connections}: pgbench clients"))
    return out


def compare(faster: Sequence[float], slower: Sequence[float]) -> tuple[float, str]:
    """The first side's median over the second's, and what the rounds say: ahead or behind
    only when every round of one beat every round of the other, by more than the noise."""
    ratio = statistics.median(faster) / statistics.median(slower) if slower and statistics.median(slower) else 0.0
    if min(faster) > max(slower) and ratio > 1 + NOISE:
        return ratio, "faster"
    if max(faster) < min(slower) and ratio < 1 - NOISE:
        return ratio, "slower"
    return ratio, "a tie"


@experiment(
    "claim-13", "one indexed read a request: sync vs async, same connections", claims=(13,), after=("claim-12",)
)
def claim_13(lab: Context) -> ClaimRecord:
    m = lab.mode
    ids = lab.scratch / "order-ids.txt"
    lab.section(f"claim 13: seeding {SEED_ROWS} orders, ids spread at random")
    lab.database.seed(SEED_ROWS, ids)
    try:
        bouncer: Pgbouncer | None = Pgbouncer(lab.database, sync_workers(lab.cores))
        lab.servers.start(bouncer.server)
    except LabError as exc:  # the direct runs still stand
        lab.failed("claim 13 through pgbouncer", exc)
        bouncer = None
    entries = contenders(lab, bouncer)
    stacks = [c for c in entries if c.service != "pgbench" and not c.raw]
    raw = [c for c in entries if c.raw]
    pgbench = {c.connections: c for c in entries if c.service == "pgbench"}
    seed = int(time.time())
    rng = random.Random(seed)
    c_wrk = m.query_concurrency
    postgres = lab.database.server
    script = pgbench_script(SEED_ROWS)
    lab.section(
        f"claim 13: GET /orders/{{id}} through nginx, c={c_wrk}, {len(stacks)} stacks, {len(raw)} on the raw driver "
        f"and pgbench, {m.peer_rounds} rounds in random order (seed {seed})"
    )
    # pgbouncer, started above, is stopped with the stacks that use it. The raw-driver stacks are
    # references: one that will not start, or whose run fails, is reported and left out.
    with lab.servers.started(*{id(s): s for c in stacks for s in c.servers}.values()):
        errors = lab.servers.start_each(*(s for c in raw for s in c.servers))
        for name, exc in errors.items():
            lab.failed(f"claim 13, the raw driver: {name}", exc)
        entries = [c for c in entries if not (c.raw and any(s.name in errors for s in c.servers))]
        try:
            for round_no in range(1, m.peer_rounds + 1):
                for c in rng.sample(entries, len(entries)):
                    settings = {"round": round_no, "round_order_seed": seed, "db_connections": c.connections}
                    try:
                        run = _run(lab, c, settings, ids, script)
                    except LabError as exc:
                        if not c.raw:
                            raise
                        lab.failed(f"claim 13, the raw driver: {c.name}", exc)
                        entries.remove(c)
                        continue
                    run.family, run.db_budget, run.db_connections = c.name, c.budget, c.connections
                    c.runs.append(run)
        finally:
            lab.servers.stop(*(s for c in raw for s in c.servers))
    for c in entries:
        workers = int(c.servers[1].settings["workers"]) if c.servers else 0
        app = [s.name for s in c.servers if s is not postgres and s.name != "pgbouncer"]
        for i, run in enumerate(c.runs):
            yard = pgbench[c.connections].runs[i].throughput_rps
            run.database_ratio = round(run.throughput_rps / yard, 4) if yard else 0.0
            run.bound_by = bound_by(run, app, workers, c.connections, lab.cores)
    return _record(m.query_concurrency, entries, pgbench, bouncer is not None)


def _run(lab: Context, c: Contender, settings: dict, ids: Path, script: str) -> Run:
    """One run of a contender: wrk through its nginx, or pgbench, each with the server
    connections it used counted."""
    m, postgres = lab.mode, lab.database.server
    # Idle first (what the last run left queued is served), then count: the connections this
    # run used, not the last run's stragglers.
    lab.gen.settle([*c.servers, postgres])
    with Activity(lab.database.url) as activity:
        if c.service == "pgbench":
            run = lab.gen.pgbench(
                f"pgbench, {c.connections} connections", lab.database.pgbench(), lab.database.url, script,
                c.connections, m.peer_duration_s, [postgres], settings,
            )  # fmt: skip
        else:
            pool = c.servers[1]
            run = lab.gen.wrk(
                c.title, c.url, m.query_concurrency, m.peer_duration_s, [*c.servers, postgres],
                {**pool.settings, **settings}, script=(WRK_ORDERS, [str(ids)]),
            )  # fmt: skip
    run.db_connections_used, run.db_connections_peak = activity.used, activity.peak
    return run


def _median(c: Contender) -> float:
    return statistics.median(r.throughput_rps for r in c.runs) if c.runs else 0.0


def _vs_pgbench(c: Contender) -> float:
    """The median of each round's throughput over pgbench's in the same round, on as many connections."""
    return statistics.median(r.database_ratio or 0.0 for r in c.runs) if c.runs else 0.0


def _p99(c: Contender) -> float:
    return statistics.median(r.latency_ms.p99 for r in c.runs) if c.runs else 0.0


def _rps(c: Contender) -> list[float]:
    return [r.throughput_rps for r in c.runs]


def _cpu_us(c: Contender) -> float:
    """The median of its runs' CPU per request of its pool alone (nginx and PostgreSQL left out)."""
    return statistics.median(cpu_us_per_request(r, [c.name]) for r in c.runs) if c.runs else 0.0


def layers(by: dict[str, Contender]) -> str:
    """What the raw-driver rows say: what the serving model changes with no library in between
    (the raw driver's async app against its sync app, direct), and what twinstack's library
    layer costs (twinstack against the raw driver, the same model and connections)."""
    raws = [c for c in by.values() if c.raw and c.runs]
    if not raws:
        return "The raw-driver apps were not measured (see the failures): the serving model is not told apart"
    model, library = [], []
    raw_sync = by.get("q-sync-raw")
    for a in sorted((c for c in raws if c.service == "async"), key=lambda c: c.connections):
        if raw_sync is None or not raw_sync.runs:
            break
        ratio, outcome = compare(_rps(a), _rps(raw_sync))
        model.append(
            f"with {a.connections} vs {raw_sync.connections} connections, async / sync {ratio:.2f} "
            f"({_median(a):.0f} vs {_median(raw_sync):.0f} req/s): {outcome}"
        )
    for r in sorted(raws, key=lambda c: (c.service, c.connections)):
        twin = by.get(r.twin)
        if twin is None or not twin.runs:
            continue
        ratio, outcome = compare(_rps(twin), _rps(r))
        library.append(
            f"{r.service} with {r.connections} connections, twinstack / raw driver {ratio:.2f} "
            f"({_median(twin):.0f} vs {_median(r):.0f} req/s): {outcome}, the pool's CPU a request "
            f"{_cpu_us(twin):.0f} vs {_cpu_us(r):.0f} µs"
        )
    return (
        "What the serving model changes (the raw driver on both sides, direct): "
        + ("; ".join(model) or "not measured")
        + ". What the library layer costs (twinstack against the raw driver, same model and connections): "
        + ("; ".join(library) or "not measured")
    )


def _record(concurrency: int, entries: list[Contender], pgbench: dict[int, Contender], pooled: bool) -> ClaimRecord:
    by = {c.name: c for c in entries}
    sync = by["q-sync"]
    pairs = [(by["q-async-pgbouncer"], by["q-sync-pgbouncer"])] if pooled else []
    pairs += [(c, sync) for c in entries if c.name.startswith("q-async-") and not (c.pooled or c.raw)]
    findings, held = [], []
    for a, s in pairs:
        ratio, outcome = compare([r.throughput_rps for r in a.runs], [r.throughput_rps for r in s.runs])
        held.append(outcome == "faster")
        where = "through pgbouncer, both" if a.pooled else "direct"
        findings.append(
            f"{where} with {a.connections} vs {s.connections} server connections: async {_median(a):.0f} req/s "
            f"({_vs_pgbench(a):.3f} x pgbench), sync {_median(s):.0f} ({_vs_pgbench(s):.3f} x pgbench), "
            f"async / sync {ratio:.2f}: {outcome}; "
            f"p99 {_p99(a):.0f} ms async, {_p99(s):.0f} ms sync"
        )
    head, other = pairs[0]
    yard = pgbench[head.connections]
    runs = [r for c in entries for r in c.runs]
    runs.sort(key=lambda r: (r.family or "", r.settings.get("round", 0)))

    def bound(c: Contender) -> str:
        return c.runs[len(c.runs) // 2].bound_by or "" if c.runs else "nothing measured"

    reason = "; ".join(findings) + f". Bound by, at {head.budget}: async, {bound(head)}; sync, {bound(other)}"
    if not pooled:
        reason += "; pgbouncer could not run: only the direct budgets were measured"
    reason += ". " + layers(by)
    return claim_record(
        13,
        what=f"GET /orders/{{id}} (one indexed read, {SEED_ROWS} orders, random ids) through nginx, c={concurrency}: "
        f"sync with {sync.runs[0].settings.get('workers', '?') if sync.runs else '?'} workers and async with "
        f"{head.runs[0].settings.get('workers', '?') if head.runs else '?'}, direct to PostgreSQL and through "
        "pgbouncer (transaction pooling, native only), against pgbench on the same connections; beside each direct "
        "budget, the same route on the raw driver (psycopg, hand-written SQL) on the same workers and connections",
        runs=runs,
        yardstick=(
            f"pgbench, {yard.connections} connections",
            "the same statement, prepared, median round; the ratio is the median of each round's",
            _median(yard),
            "req/s",
        ),
        measured=(f"async, {head.budget} (median round)", _median(head), "req/s"),
        ratio=_vs_pgbench(head),
        band=f"holds where async answered more than sync in every round, by more than {NOISE:.0%}, at every budget",
        # The raw-driver rows are references: they are shown, they do not decide.
        verdict=decide(all(held), reason, [r for c in entries if not c.raw for r in c.runs]),
    )
