"""The database path: what twinstack's order routes cost per request, against the same routes on
the raw driver and on the same libraries used plainly, measured in the same run.

For each pool, on its own gunicorn.conf.py (same worker class, same worker count), straight to
its port (no nginx), three contenders (bench/db_apps.py has the two references):
- twinstack: the pool's own app, its default settings, measured through HTTP alone (at the
  lab's log level, warning, as the other apps: what the access line costs is the overhead
  experiment's figure);
- the raw driver: psycopg 3 connections held by each worker (psycopg_pool, min = max),
  hand-written SQL, the same JSON;
- the same libraries, plainly: FastAPI or Flask with SQLAlchemy 2 Core, an engine per worker.
The references keep ``CONNECTIONS`` a worker: twinstack's own default pool size for the async
pool (TWINSTACK_ASYNC_DB_POOL_SIZE's default); one for the sync pool, whose worker serves one request
at a time.

The routes (``mode.db_path_routes``): ``GET /orders/{id}`` on the orders claim 13 seeds, ids at
random (bench/wrk_orders.lua); ``POST /orders`` without an Idempotency-Key and with a new one
on every request (bench/wrk_post_orders.lua); ``GET /orders?limit=20``.

Concurrency (``CONCURRENCY``). The async pool gets 32 connections: with one worker a core,
that is 16 requests in flight a worker on 2 cores, more than the 10 connections its pool keeps,
so requests queue for a connection inside the worker as they do under real load, and what the
pool does then (waiting, or opening connections beyond its size) is part of what is measured.
The sync pool gets 10: a sync worker serves one request at a time, so beyond about two a
worker (2 x cores + 1 workers) more connections only lengthen the queue in the listen socket,
while fewer would leave a worker idle between requests and measure the gap.

For every (pool, route, contender), each round: the servers idle first, then
``pg_stat_database.sessions`` read, one wrk run, the sessions read again. Recorded: the CPU of
the pool's processes (master and workers) per response served, in microseconds; PostgreSQL's
beside it; req/s; p99; the sessions opened during the run (after - before, less the reading's
own connection). Every contender first runs one warm-up (``GET /orders/{id}``, same
concurrency) that opens its connections and is not counted. The contenders of a route run in
an order that turns each round and each route (``mode.db_path_rounds`` rounds: 3 in a full
run, one in quick and tiny, which only show the experiment runs), and a row is its median
round by throughput, with its CPU per request the median of its rounds'.

The target, on every route of both pools: the raw driver's CPU per request over twinstack's
(raw / twinstack) >= ``TARGET``. Where one is not met, the record names what bound the run.
"""

from __future__ import annotations

import statistics
import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from .database import SEED_ROWS
from .load import Script
from .modes import Mode
from .overhead import binds
from .peers import combine
from .procs import LabError, Server
from .records import DbPath, DbPathPool, DbPathRow, Run, Target
from .registry import Context, Phase, experiment

TWINSTACK, RAW, PLAIN = "twinstack", "raw driver", "SQLAlchemy Core, plainly"
APPS = {
    RAW: {"async": "bench.db_apps:fastapi_raw()", "sync": "bench.db_apps:flask_raw()"},
    PLAIN: {"async": "bench.db_apps:fastapi_plain()", "sync": "bench.db_apps:flask_plain()"},
}
# (key, what the report calls it, the path wrk asks for)
ROUTES = (
    ("get", "GET /orders/{id}", "/orders/"),
    ("post", "POST /orders", "/orders"),
    ("post-key", "POST /orders, a new Idempotency-Key each", "/orders"),
    ("list", "GET /orders?limit=20", "/orders?limit=20"),
)
LABELS = {key: label for key, label, _ in ROUTES}
CONCURRENCY = {"async": 32, "sync": 10}
CONNECTIONS = {"async": 10, "sync": 1}  # a reference worker's connections
TARGET = 0.60
WARMUP_S = 1
WRK_ORDERS = Path(__file__).with_name("wrk_orders.lua")
WRK_POST = Path(__file__).with_name("wrk_post_orders.lua")
# Where claim 13 leaves the seeded orders' ids (one a line); seeded here when it has not run.
ORDER_IDS = "order-ids.txt"
SESSIONS = "SELECT sessions FROM pg_stat_database WHERE datname = current_database()"
# The sessions the reading after a run opens itself: its own connection.
OBSERVER = 1


def sessions(url: str) -> int:
    """Sessions ever opened to the lab's database, read on a connection of its own (which a
    new backend counts as soon as it is ready: this reading counts itself)."""
    with psycopg.connect(url, autocommit=True) as conn:
        return int(conn.execute(SESSIONS).fetchone()[0])


def opened(before: int, after: int, observer: int = OBSERVER) -> int:
    """The sessions a run opened, from the counter read before and after it: the reading after
    it opened ``observer`` of them itself."""
    return max(0, after - before - observer)


def cpu_us_per_request(run: Run, names: Collection[str]) -> float:
    """CPU microseconds the processes of the servers ``names`` used per response served (2xx)."""
    by = run.server_cpu_cores_by
    total = sum(by.values())
    served = run.throughput_rps * run.duration_s
    if total <= 0 or served < 1:
        return 0.0
    cpu_s = run.server_cpu_s * sum(by.get(name, 0.0) for name in names) / total
    return round(1e6 * cpu_s / served, 1)


def script(route: str, ids: Path) -> Script | None:
    """The Lua file that makes a route's requests (bench/), and its arguments."""
    if route == "get":
        return WRK_ORDERS, [str(ids)]
    if route == "post":
        return WRK_POST, []
    if route == "post-key":
        return WRK_POST, ["key", uuid.uuid4().hex]  # a token of this run: every key is new
    return None


def planned_s(mode: Mode) -> int:
    """Seconds of load a mode's run of the experiment makes: both pools, three contenders, a
    warm-up each, then every round of every route (settling and starting come on top)."""
    return 2 * 3 * (WARMUP_S + mode.db_path_rounds * len(mode.db_path_routes) * mode.peer_duration_s)


@dataclass
class Contender:
    label: str
    server: Server
    runs: dict[str, list[Run]] = field(default_factory=dict)
    cpu: dict[str, list[float]] = field(default_factory=dict)
    postgres: dict[str, list[float]] = field(default_factory=dict)
    sessions: dict[str, list[int]] = field(default_factory=dict)
    failed: set[str] = field(default_factory=set)
    """The routes where one of its runs failed: it is not run there again."""


@experiment("dbpath", "the database path: twinstack against the raw driver and the plain libraries", phase=Phase.EDGE)
def dbpath(lab: Context) -> DbPath:
    m = lab.mode
    ids = lab.scratch / ORDER_IDS
    if not ids.exists():
        lab.section(f"database path: seeding {SEED_ROWS} orders, ids spread at random")
        lab.database.seed(SEED_ROWS, ids)
    pools = {service: _pool(lab, service, ids) for service in ("async", "sync")}
    return DbPath(
        rounds=m.db_path_rounds,
        duration_s=m.peer_duration_s,
        pools=pools,
        targets=targets(pools, m.db_path_routes),
    )


def _contenders(lab: Context, service: str) -> list[Contender]:
    out = [Contender(TWINSTACK, lab.pool(f"dbpath-{service}-twinstack", service))]
    env = {"TWINSTACK_BENCH_DB_POOL_SIZE": str(CONNECTIONS[service])}
    for label, short in ((RAW, "raw"), (PLAIN, "plain")):
        out.append(Contender(label, lab.pool(f"dbpath-{service}-{short}", service, app=APPS[label][service], env=env)))
    return out


def _pool(lab: Context, service: str, ids: Path) -> DbPathPool:
    m = lab.mode
    c = CONCURRENCY[service]
    contenders = _contenders(lab, service)
    workers = int(contenders[0].server.settings["workers"])
    errors = lab.servers.start_each(*(x.server for x in contenders))
    for name, exc in errors.items():
        lab.failed(f"database path: {name}", exc)
    running = [x for x in contenders if x.server.name not in errors]
    postgres = lab.database.server
    lab.section(
        f"database path, {service} pool: {len(m.db_path_routes)} routes, c={c}, {len(running)} contenders, "
        f"{m.db_path_rounds} round(s) of {m.peer_duration_s} s"
    )
    try:
        for x in list(running):
            try:
                lab.gen.wrk(
                    f"{service} {x.label}: warm-up", x.server.base_url + "/orders/", c, WARMUP_S, [x.server],
                    x.server.settings, script=script("get", ids),
                )  # fmt: skip
            except LabError as exc:
                lab.failed(f"database path: {service} {x.label}", exc)
                running.remove(x)
        for i in range(m.db_path_rounds):
            for j, route in enumerate(m.db_path_routes):
                turn = (i + j) % len(running) if running else 0
                for x in running[turn:] + running[:turn]:
                    _measure(lab, x, service, route, c, i + 1, ids, postgres)
    finally:
        lab.servers.stop(*(x.server for x in contenders))
    return DbPathPool(concurrency=c, workers=workers, reference_connections=CONNECTIONS[service],
                      rows=rows(service, contenders, m.db_path_routes))  # fmt: skip


def _measure(lab: Context, x: Contender, service: str, route: str, c: int, round_no: int, ids: Path,
             postgres: Server) -> None:  # fmt: skip
    """One round of one contender on one route; a run that fails is reported and left out."""
    server = x.server
    path = next(p for key, _, p in ROUTES if key == route)
    if route in x.failed:
        return
    try:
        lab.gen.settle([server, postgres])
        before = sessions(lab.database.url)
        run = lab.gen.wrk(
            f"{service} {x.label}: {LABELS[route]}", server.base_url + path, c, lab.mode.peer_duration_s,
            [server, postgres], {**server.settings, "round": round_no}, script=script(route, ids),
        )  # fmt: skip
        after = sessions(lab.database.url)
    except (LabError, psycopg.Error) as exc:
        lab.failed(f"database path: {service} {x.label} on {LABELS[route]}", exc)
        x.failed.add(route)
        return
    x.runs.setdefault(route, []).append(run)
    x.cpu.setdefault(route, []).append(cpu_us_per_request(run, [server.name]))
    x.postgres.setdefault(route, []).append(cpu_us_per_request(run, [postgres.name]))
    x.sessions.setdefault(route, []).append(opened(before, after))


def rows(service: str, contenders: Sequence[Contender], routes: Sequence[str]) -> list[DbPathRow]:
    """Each route's contenders as rows (twinstack, the raw driver, plainly), each row beside the
    raw driver's CPU per request on the same route."""
    out = []
    for route in routes:
        found = [_row(service, route, x) for x in contenders if x.runs.get(route)]
        raw = next((row for row in found if row.contender == RAW), None)
        for row in found:
            row.raw_cpu_ratio = ratio(raw, row)
        out += found
    return out


def _row(service: str, route: str, x: Contender) -> DbPathRow:
    row = combine(x.runs[route], DbPathRow, pool=service, route=LABELS[route], contender=x.label,
                  cpu_us_per_request=round(statistics.median(x.cpu[route]), 1), cpu_us_rounds=x.cpu[route],
                  postgres_cpu_us_per_request=round(statistics.median(x.postgres[route]), 1),
                  sessions_opened=sum(x.sessions[route]), sessions_rounds=x.sessions[route])  # fmt: skip
    return row


def ratio(raw: DbPathRow | None, row: DbPathRow) -> float | None:
    """raw / row, CPU per request: 1.0 is as cheap as the raw driver, 0.5 twice as dear."""
    if raw is None or not raw.cpu_us_per_request or not row.cpu_us_per_request:
        return None
    return round(raw.cpu_us_per_request / row.cpu_us_per_request, 4)


def targets(pools: dict[str, DbPathPool], routes: Sequence[str]) -> list[Target]:
    """One target per pool and route: raw / twinstack CPU per request >= TARGET."""
    out = []
    for service in ("async", "sync"):
        pool = pools.get(service)
        for route in routes:
            key, label = f"{service}-{route}", LABELS[route]
            what = f"{service} pool, {label}: the raw driver's CPU per request / twinstack's"
            by = {row.contender: row for row in (pool.rows if pool else []) if row.route == label}
            ours, raw = by.get(TWINSTACK), by.get(RAW)
            measured = ratio(raw, ours) if ours else None
            if measured is None:
                out.append(Target(key=key, what=what, target=TARGET, binds="not measured (see the failures)"))
                continue
            figures = f"twinstack {ours.cpu_us_per_request:,.0f} µs, raw driver {raw.cpu_us_per_request:,.0f} µs"
            if PLAIN in by:
                figures += f", {PLAIN} {by[PLAIN].cpu_us_per_request:,.0f} µs"
            figures += f" per request; sessions opened by twinstack: {ours.sessions_opened}"
            out.append(Target(key=key, what=what, target=TARGET, measured=measured, met=measured >= TARGET,
                              figures=figures, binds=binds(ours)))  # fmt: skip
    return out
