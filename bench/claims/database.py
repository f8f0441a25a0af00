"""Claim 12: with a database, the connection pool is the limit, not the event loop.

``GET /db?delay_ms=L`` holds one pooled connection for L (``pg_sleep`` on the lab's
PostgreSQL). Little's law still holds, with the *connection slots* as the concurrency: an
async pool answers at most ``min(C, workers x connections per worker) / L`` a second, however
many requests its loops hold, and a sync pool ``min(C, workers) / L`` (each worker holds one
request, and its pool has a connection for it). Two async pools show the knee and what moves
it: a small pool per worker, and one four times larger.
"""

from __future__ import annotations

from twinstack_db import budget
from twinstack_db.settings import DEFAULT_MAX_CONNECTIONS, SyncDbPool
from twinstack_runtime.serving import sync_workers

from ..database import MAX_CONNECTIONS as DB_MAX_CONNECTIONS
from ..procs import LabError
from ..records import ClaimRecord, Run
from ..registry import Context, experiment
from ..verdicts import bound_by, claim_record, decide

SMALL, LARGE = 2, 8  # connections per async worker (pool_size, no overflow)
# Queued for a connection rather than refused: the pool timeout is above any wait here.
POOL_TIMEOUT_S = "30"
MAX_LEVEL = 64  # a higher concurrency only queues longer behind the same few connections
LOW, HIGH = 0.7, 1.1


def most_per_worker(async_n: int, sync_n: int, max_connections: int = DEFAULT_MAX_CONNECTIONS) -> int:
    """The most connections an async worker may have (its pool_size) before the
    budget (twinstack_db/budget.py) exceeds ``max_connections``, the sync pool at its defaults."""
    sync = budget.PoolBudget("sync", sync_n, SyncDbPool.model_construct())
    spare = max_connections - budget.needed([sync])
    return max(0, spare // async_n)


def pool_env(prefix: str, connections: int, **more: str) -> dict[str, str]:
    """A pool's settings for ``connections`` a worker, queued rather than refused."""
    return {
        f"TWINSTACK_{prefix}_DB_POOL_SIZE": str(connections),
        "TWINSTACK_DB_POOL_TIMEOUT_S": POOL_TIMEOUT_S,
        **more,
    }


def refused(lab: Context, per_worker: int) -> str:
    """Start an async pool asking for ``per_worker`` connections a worker: what its master said
    when it refused to start (the budget check, before any worker), or "" if it started."""
    server = lab.pool("db-async-over-budget", "async", env=pool_env("ASYNC", per_worker))
    try:
        lab.servers.start(server)
    except LabError as exc:
        said = next((line for line in str(exc).splitlines() if "does not fit" in line), "")
        return said.strip() or str(exc).splitlines()[0]
    lab.servers.stop(server)
    return ""


@experiment("claim-12", "the database pool as the limit of /db", claims=(12,), after=("claims-3-9",))
def claim_12(lab: Context) -> ClaimRecord:
    m = lab.mode
    delay_ms = m.io_delay_ms
    path = f"/db?delay_ms={delay_ms}"
    levels = [c for c in m.io_levels if c <= MAX_LEVEL]
    pools = {
        f"async, {SMALL} connections a worker": lab.pool("db-async-small", "async", env=pool_env("ASYNC", SMALL)),
        f"async, {LARGE} connections a worker": lab.pool("db-async-large", "async", env=pool_env("ASYNC", LARGE)),
        "sync, one connection in use a worker": lab.pool("db-sync", "sync", env=pool_env("SYNC", 2)),
    }
    per_worker = {f"async, {SMALL} connections a worker": SMALL, f"async, {LARGE} connections a worker": LARGE}
    lab.section(f"claim 12: {path} against concurrency {levels[0]} -> {levels[-1]}, the pool as the limit")
    runs: list[Run] = []
    postgres = lab.database.server
    with lab.servers.started(*pools.values()):
        for label, server in pools.items():
            workers = int(server.settings["workers"])
            slots = workers * per_worker.get(label, 1)
            for c in levels:
                run = lab.gen.wrk(
                    f"{label}: {path}", server.base_url + path, c, m.duration_s, [server, postgres],
                    {**server.settings, "db_connections": slots},
                )  # fmt: skip
                run.limits = lab.limits(run, server.settings, min(c, slots), delay_ms / 1000)
                run.bound_by = bound_by(run, [server.name], workers, slots, lab.cores)
                run.family = label
                run.slots = slots
                runs.append(run)
    small = [r for r in runs if r.family.startswith(f"async, {SMALL} ")]
    large = [r for r in runs if r.family.startswith(f"async, {LARGE} ")]
    top, top_large = small[-1], large[-1]
    pool_rps = top.slots / (delay_ms / 1000)
    loop_rps = top.concurrency / (delay_ms / 1000)
    ratio = top.throughput_rps / pool_rps if pool_rps else 0.0
    knee = top.concurrency > top.slots
    raised = top_large.throughput_rps / top.throughput_rps if top.throughput_rps else 0.0
    workers = top.slots // SMALL
    # Where max_connections binds: the most a worker may have beside the sync pool's defaults,
    # and a master asked for one more, started for real.
    most = most_per_worker(workers, sync_workers(lab.cores), DB_MAX_CONNECTIONS)
    said = refused(lab, most + 1)
    ok = knee and LOW <= ratio <= HIGH and bool(said)
    reason = (
        f"at c={top.concurrency}, {top.slots} connections: {top.throughput_rps:.0f} req/s, "
        f"{ratio:.2f} x connections / latency ({pool_rps:.0f}) and {top.throughput_rps / loop_rps:.2f} x what the "
        f"event loops could hold (c / latency, {loop_rps:.0f}); {top_large.slots} connections: "
        f"{top_large.throughput_rps:.0f} req/s ({raised:.1f} x). Raising the pool raises that limit until "
        f"max_connections binds: {DB_MAX_CONNECTIONS} on the lab's server allow an async worker at most {most} "
        f"connections beside the sync pool's defaults (a limit of {workers * most / (delay_ms / 1000):.0f} req/s "
        f"at this latency, computed); a master asked for {most + 1} "
        + (
            f"refused to start, before any worker (measured): {said[:160]}"
            if said
            else "started: the check did not bind"
        )
    )
    if not knee:
        reason = (
            f"the highest concurrency measured ({top.concurrency}) does not exceed the pool's {top.slots} connections"
        )
    return claim_record(
        12,
        what=f"GET {path} direct to an async pool with {SMALL} and with {LARGE} database connections a worker, and to "
        f"the sync pool, at concurrency {', '.join(map(str, levels))}; the lab's PostgreSQL (pg_sleep)",
        runs=runs,
        yardstick=("Little's law, connection slots", "min(C, workers x connections) / latency", pool_rps, "req/s"),
        measured=(f"throughput at c={top.concurrency}", top.throughput_rps, "req/s"),
        ratio=ratio,
        band=f"{LOW} <= ratio <= {HIGH}, with C above the connections",
        verdict=decide(ok, reason, runs),
        chart="pool",
    )
