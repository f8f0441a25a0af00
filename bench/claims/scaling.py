"""Claims 5 and 6: sync scales by adding workers (and threads), and pays for it in memory.

Claim 5 sets throughput against ``workers x threads / latency`` for each size; claim 6 holds
the same number of requests with sync workers, gthread threads and one event loop and
compares the proportional memory (PSS) each needs per request.
"""

from __future__ import annotations

from ..procs import Server
from ..records import ClaimRecord
from ..registry import Context, experiment
from ..verdicts import claim_record, decide


# Claim 6 measures the one-worker async server's memory while it is fresh: before claim 1 has
# it hold thousands of connections and claims 3 and 9 give it a process pool.
@experiment("claims-5-6", "sync workers and gthread threads: throughput and memory per request", claims=(5, 6))
def claims_5_and_6(lab: Context) -> list[ClaimRecord]:
    """Both claims on the same pools: 1..N sync workers, and one gthread worker with 1..N threads."""
    m = lab.mode
    sync = {w: lab.pool(f"sync-{w}-workers", "sync", workers=w) for w in m.scale}
    gthread = {t: lab.pool(f"gthread-1x{t}", "sync", workers=1, worker_class="gthread", threads=t) for t in m.scale}
    with lab.servers.started(*sync.values(), *gthread.values()):
        return [_claim_5(lab, sync, gthread), _claim_6(lab, sync, gthread)]


def _claim_5(lab: Context, sync: dict[int, Server], gthread: dict[int, Server]) -> ClaimRecord:
    m = lab.mode
    top = max(m.scale)
    concurrency = 4 * top
    path = f"/io?delay_ms={m.io_delay_ms}"
    lab.section(f"claim 5: {path} at c={concurrency} on sync workers {m.scale} and gthread threads {m.scale}")
    runs = []
    for family, servers in (("sync workers", sync), ("gthread threads", gthread)):
        for n, server in servers.items():
            run = lab.gen.wrk(
                f"{family}: {n}", server.base_url + path, concurrency, m.duration_s, [server], server.settings
            )
            run.limits = lab.limits(run, server.settings, concurrency, m.io_delay_ms / 1000)
            run.family, run.slots = family, n
            runs.append(run)
    worst = min(runs, key=lambda r: r.limits.little_ratio)
    ratio = worst.limits.little_ratio
    first, last = runs[0], runs[len(m.scale) - 1]
    scaling = last.throughput_rps / first.throughput_rps if first.throughput_rps else 0.0
    return claim_record(
        5,
        what=f"GET {path}, {concurrency} concurrent (direct), on the sync pool with {', '.join(map(str, m.scale))} "
        f"workers, then on one gthread worker with {', '.join(map(str, m.scale))} threads",
        runs=runs,
        # The size that decides the verdict: the furthest below its limit.
        yardstick=("Little's law", "workers x threads / latency", worst.limits.little_rps, "req/s"),
        measured=(f"throughput, {worst.label}", worst.throughput_rps, "req/s"),
        ratio=ratio,
        band="ratio >= 0.8 at every size (throughput grows with workers x threads)",
        verdict=decide(
            ratio >= 0.8,
            f"{top} workers answered {scaling:.1f}x what 1 did (ideal {top}x); every size reached "
            f">= {ratio:.0%} of workers x threads / latency",
            runs,
        ),
        chart="scaling",
    )


def _claim_6(lab: Context, sync: dict[int, Server], gthread: dict[int, Server]) -> ClaimRecord:
    m = lab.mode
    top = max(m.scale)
    # Claim 6: the memory it takes to hold `top` requests at once, three ways.
    hold = max(200, m.io_delay_ms)
    async_one = lab.async_one()
    lab.section(f"claim 6: memory (PSS) holding {top} concurrent requests")
    mem_runs = []
    for label, server in (
        (f"sync: {top} workers", sync[top]),
        (f"gthread: 1 worker x {top} threads", gthread[top]),
        ("async: 1 uvicorn worker", async_one),
    ):
        run = lab.gen.wrk(
            f"{label}, {top} in flight",
            f"{server.base_url}/io?delay_ms={hold}",
            top,
            m.duration_s,
            [server],
            server.settings,
        )
        run.pss_mb_per_request = round(run.server_pss_mb / top, 3)
        # What holding the requests added to what the idle server already had.
        run.pss_mb_added_per_request = round(max(0.0, run.server_pss_mb - run.server_pss_idle_mb) / top, 3)
        mem_runs.append(run)
    sync_mb, thread_mb, async_mb = (r.pss_mb_per_request for r in mem_runs)
    sync_add, _, async_add = (r.pss_mb_added_per_request for r in mem_runs)
    ratio = sync_mb / async_mb if async_mb else 0.0
    return claim_record(
        6,
        what=f"GET /io?delay_ms={hold} with {top} requests in flight, direct, on: {top} sync workers, one "
        f"gthread worker with {top} threads, one uvicorn worker; peak PSS of each server's processes "
        "(proportional set size: pages shared between forked workers are split among them)",
        runs=mem_runs,
        yardstick=("memory per request of the async worker", "PSS(async) / requests in flight", async_mb, "MiB"),
        measured=("memory per request of the sync pool", sync_mb, "MiB"),
        ratio=ratio,
        band="ratio >= 1.5",
        verdict=decide(
            ratio >= 1.5,
            f"{sync_mb:.1f} MiB per concurrent request on sync workers vs {async_mb:.1f} MiB on one event loop "
            f"({ratio:.1f}x); one gthread worker's threads: {thread_mb:.1f} MiB"
            f"{_threads_vs_loop(thread_mb, async_mb)}. The cost is the processes held ready: "
            f"the requests themselves added {sync_add * 1024:.0f} KiB each on sync workers and "
            f"{async_add * 1024:.0f} KiB on the event loop to the idle servers' memory",
            mem_runs,
        ),
        chart="memory",
    )


def _threads_vs_loop(thread_mb: float, async_mb: float) -> str:
    """Where threads stand against the event loop, as measured (they are close: one process each)."""
    if not async_mb:
        return ""
    share = thread_mb / async_mb
    if abs(share - 1) < 0.05:
        return ", about what the event loop takes"
    return f", {'less' if share < 1 else 'more'} than the event loop ({share:.2f}x)"
