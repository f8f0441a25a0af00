"""The yardsticks and the verdict rules every experiment of the lab is judged by.

The yardsticks:
- Little's law: a server holding ``slots`` requests at once, each waiting ``latency``, cannot
  answer more than ``slots / latency`` per second. slots = concurrency for an event loop,
  workers for sync workers, workers x threads for gthread.
- The utilisation law: ``cores / cpu-seconds-per-request``, with the CPU time per request
  measured (server CPU seconds / requests), and the cores the servers could use (the ones not
  busy with the load generator, whose CPU is measured too). A Python process runs Python
  code on one core at a time (the GIL), so ``cores`` is also capped by the busy processes.
  On a curve, the CPU time per request is the lowest that server showed on that path at any
  concurrency: what a request costs at best, so a cost that rises under load (contention,
  queueing, context switches) shows as a shortfall against the limit, not as a moved limit.
  A point is CPU-bound when the servers used >= 80 % of the cores they could use.
- The box: wrk against nginx ``return 200``, the first row of the report.

Verdicts: ``holds`` / ``does not hold`` when the measured ratio is inside / outside the band
stated with each claim; ``inconclusive`` when the run cannot tell (errors above 1 %, a
saturated load generator, a server still busy from the previous run, too few requests), with
the reason.
"""

from __future__ import annotations

from collections.abc import Sequence

from .records import ClaimRecord, Limits, Measured, Run, Settings, Yardstick

HOLDS, FAILS, INCONCLUSIVE = "holds", "does not hold", "inconclusive"
VERDICTS = (HOLDS, FAILS, INCONCLUSIVE)
MAX_ERROR_RATE = 0.01
# Differences smaller than this between two runs are within a shared machine's run-to-run noise.
NOISE = 0.05
# The servers used at least this share of the cores they could use: the CPU set the pace.
CPU_BUSY = 0.8
# A process that kept this share of the CPU it could use was limited by its CPU.
BUSY = 0.9
# All CPUs this busy (the servers, the generator, the lab itself): the box set the pace.
BOX_BUSY = 0.85
# The status a server that has no WebSocket to offer answers a handshake with, instead of 101.
REFUSALS = (400, 403, 404, 405, 426)

CLAIMS = {
    1: "One async process holds thousands of concurrent connections.",
    2: "Async excels at I/O-bound work: throughput close to concurrency / latency.",
    3: "CPU work inside the event loop stalls every other request on that worker.",
    4: "A sync worker serves one request at a time: throughput close to workers / latency.",
    5: "Sync scales by adding worker processes (and threads, with gthread).",
    6: "Sync costs more memory per concurrent request.",
    7: "Sync is straightforward for CPU-bound work: throughput close to cores / cpu-time.",
    8: "asyncio.gather makes N waits cost one wait.",
    9: "A blocking call inside async def stalls the loop; asyncio.to_thread fixes it.",
    10: "Background work runs after the response is sent.",
    11: "WSGI cannot hold a WebSocket; ASGI can.",
    12: "With a database, the connection pool is the limit: throughput close to connections / latency.",
    13: "Async is faster than sync for database queries (one indexed read a request, the same connections).",
    14: "A blocking database driver inside async def stalls the loop; the same call in a thread does not.",
    15: "TLS costs little on a kept-alive connection; the handshake is what costs.",
}


def quality(runs: Sequence[Run], expect_errors: bool = False, paced: bool = True) -> str | None:
    """Why a set of runs cannot decide a claim, or None when they can. A claim decided on a
    cost per request rather than on a pace (``paced`` false: throughput, latency) is not
    undone by a saturated generator, which slows the pace but leaves each request's cost."""
    for run in runs:
        if paced and run.generator_saturated:
            return f"the load generator saturated its CPU in '{run.label}', so it, not the server, set the pace"
        if not run.settled:
            return f"the server was still busy from the previous run when '{run.label}' started"
        if not expect_errors and run.error_rate > MAX_ERROR_RATE:
            return f"{run.errors} of {run.requests} requests failed in '{run.label}'"
        if run.requests < 2:
            return f"too few requests completed in '{run.label}'"
        side = run.background
        if side is not None and (side.errors or not side.requests):
            return (
                f"the interfering load in '{run.label}' did not run cleanly "
                f"({side.requests} requests, {side.errors} errors)"
            )
    return None


def decide(
    ok: bool, reason: str, runs: Sequence[Run], expect_errors: bool = False, paced: bool = True
) -> tuple[str, str]:
    problem = quality(runs, expect_errors, paced)
    if problem:
        return INCONCLUSIVE, problem
    return (HOLDS if ok else FAILS), reason


def physical_limits(
    run: Run,
    settings: Settings,
    concurrency: int,
    wait_s: float,
    cores: int,
    pinned: bool,
    cpu_ms_ref: float | None = None,
) -> Limits:
    """The limits one run could not beat: Little's law (when each request waits ``wait_s``) and
    the utilisation law (the free cores over the CPU time a request takes: ``cpu_ms_ref``
    when given, the lowest measured on the curve, else this run's own)."""
    workers = settings.get("workers", 1)
    wc = settings.get("worker_class", "")
    if wc == "sync":
        slots = min(concurrency, workers)
    elif wc == "gthread":
        slots = min(concurrency, workers * settings.get("threads", 1))
    elif wc == "gevent":
        slots = min(concurrency, workers * settings.get("worker_connections", 1000))
    else:  # an event loop: every connection is in flight at once
        slots = concurrency
    limits: dict = {"slots": slots}
    if wait_s:
        limits["little_rps"] = slots / wait_s
    # Unpinned, the generator's measured CPU is not available to the servers.
    free_cores = cores if pinned else cores - run.generator_cpu_cores
    busy = min(concurrency, workers)  # each process runs Python on one core at a time (the GIL)
    usable = max(0.05, min(free_cores, busy))
    cpu_ms = cpu_ms_ref if cpu_ms_ref else run.cpu_ms_per_request
    limits["cores_available"] = usable
    limits["cpu_ms_per_request_ref"] = cpu_ms
    # How much dearer a request was in this run than at best (1.0 on the cheapest point).
    limits["cpu_cost_rise"] = run.cpu_ms_per_request / cpu_ms if cpu_ms else 0.0
    limits["utilisation"] = run.server_cpu_cores / usable
    if cpu_ms > 0:
        limits["cpu_rps"] = usable / (cpu_ms / 1000)
    throughput = run.throughput_rps
    for law in ("little", "cpu"):
        if f"{law}_rps" in limits:
            limits[f"{law}_ratio"] = throughput / limits[f"{law}_rps"] if limits[f"{law}_rps"] else 0.0
    bound = min((v for k, v in limits.items() if k.endswith("_rps")), default=0.0)
    limits["bound_rps"] = bound
    # Which limit set the pace, as measured: the CPU when the servers kept it busy, else the wait.
    cpu_bound = "cpu_rps" in limits and ("little_rps" not in limits or limits["utilisation"] >= CPU_BUSY)
    limits["binding"] = "cpu" if cpu_bound else "little"
    limits["ratio"] = throughput / bound if bound else 0.0
    return Limits(**{k: (round(v, 3) if isinstance(v, float) else v) for k, v in limits.items()})


def bound_by(run: Run, app: Sequence[str], workers: int, connections: int, cores: int, *, database: bool = True) -> str:
    """What limited one run against the lab's PostgreSQL, from what it measured: the load
    generator, the box's CPUs (and who used them), PostgreSQL's CPU, the app's, or nothing
    saturated (then the round trips did). ``app`` names the servers that are the app (its pool,
    and its nginx where there is one); PostgreSQL and pgbouncer are found by their names.
    Without a ``database`` (claim 15: nginx and a pool), PostgreSQL is neither named nor judged."""
    by = run.server_cpu_cores_by
    pg = by.get("postgres", 0.0) + by.get("pgbouncer", 0.0)
    app_cpu = sum(cores_used for name, cores_used in by.items() if name in app)
    figures = f"app {app_cpu:.2f}, {f'PostgreSQL {pg:.2f}, ' if database else ''}"
    figures += f"generator {run.generator_cpu_cores:.2f} cores"
    if run.generator_saturated:
        return f"the load generator ({figures})"
    if run.box_saturated or run.box_cpu_utilisation >= BOX_BUSY:
        return f"the box's CPUs, {run.box_cpu_utilisation:.0%} busy ({figures})"
    if database and pg >= BUSY * min(connections, cores):
        return f"PostgreSQL's CPU ({figures})"
    if app and app_cpu >= BUSY * min(workers, cores):
        return f"the app's CPU ({figures})"
    return f"nothing saturated: the round trips ({figures})"


def describe(settings: Settings) -> str:
    parts = [settings.get("server", "")]
    if "worker_class" in settings:
        parts.append(f"-k {settings['worker_class']}")
    if "workers" in settings:
        parts.append(f"{settings['workers']} workers")
    if settings.get("threads", 1) > 1:
        parts.append(f"{settings['threads']} threads")
    if "worker_connections" in settings:
        parts.append(f"{settings['worker_connections']} connections each")
    if "app" in settings:
        parts.append(settings["app"])
    return ", ".join(p for p in parts if p)


def claim_record(
    claim: int,
    *,
    what: str,
    runs: Sequence[Run],
    yardstick: tuple[str, str, float, str],
    measured: tuple[str, float, str],
    ratio: float,
    band: str,
    verdict: tuple[str, str],
    chart: str | None = None,
) -> ClaimRecord:
    """One claim's record in results.json: what ran, its runs, the yardstick, the ratio, the verdict."""
    name, formula, value, unit = yardstick
    return ClaimRecord(
        claim=claim,
        text=CLAIMS[claim],
        what=what,
        runs=list(runs),
        yardstick=Yardstick(name=name, formula=formula, value=round(float(value), 3), unit=unit),
        measured=Measured(name=measured[0], value=round(float(measured[1]), 3), unit=measured[2]),
        ratio=round(float(ratio), 4),
        band=band,
        verdict=verdict[0],
        reason=verdict[1],
        chart=chart or "",
    )


def unmeasured(claim: int, reason: str) -> ClaimRecord:
    """The record of a claim whose experiment could not run: inconclusive, with the reason."""
    return claim_record(
        claim,
        what="the experiment could not run",
        runs=[],
        yardstick=("-", "-", 0.0, ""),
        measured=("-", 0.0, ""),
        ratio=0.0,
        band="-",
        verdict=(INCONCLUSIVE, reason),
    )
