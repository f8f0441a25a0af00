"""Claims 1, 2 and 4: I/O-bound requests, held by one event loop or queued for sync workers.

Little's law is the yardstick: a server holding ``slots`` requests, each waiting ``latency``,
answers at most ``slots / latency`` a second (slots: the concurrency for an event loop, the
workers for sync workers).
"""

from __future__ import annotations

from ..records import ClaimRecord, Curves
from ..registry import Context, experiment
from ..verdicts import CPU_BUSY, INCONCLUSIVE, claim_record, decide, describe, unmeasured

# Claim 4's band: one request per worker at a time, neither fewer nor more.
LOW, HIGH = 0.8, 1.1


# After claim 6 has measured the one-worker async server's memory while it was fresh.
@experiment("claim-1", "connections held at once by one async process", claims=(1,), after=("claims-5-6",))
def claim_1(lab: Context) -> ClaimRecord:
    m = lab.mode
    lab.section(f"claim 1: {m.connections} connections on one async process")
    server = lab.async_one()
    path = f"/io?delay_ms={m.connections_delay_ms}"
    settings = {**server.settings, "waves": m.connections_waves, "delay_ms": m.connections_delay_ms}
    run = lab.gen.hold(
        f"one uvicorn worker, {m.connections} connections",
        server,
        path,
        m.connections,
        m.connections_waves,
        m.connections_delay_ms / 1000,
        settings,
    )
    held = run.held_concurrency or 0
    ratio = held / m.connections
    # What holding the connections added to the idle server (the interpreter is there anyway).
    added_mb = max(0.0, run.server_pss_mb - run.server_pss_idle_mb)
    run.pss_kb_per_connection = round(added_mb * 1024 / m.connections, 2)
    verdict, reason = decide(
        ratio >= 0.8,
        f"in the worst of {m.connections_waves} waves, {held} of the {m.connections} "
        f"requests were in flight at the same instant and answered before a second {m.connections_delay_ms} ms "
        f"wait could pass (p50 {run.latency_ms.p50:.0f} ms, p99 {run.latency_ms.p99:.0f} ms; beyond "
        f"the wait, one core handling {m.connections} requests of {run.cpu_ms_per_request:.2f} ms of CPU each): "
        "served side by side on one "
        f"process, none queued behind another; each connection added {run.pss_kb_per_connection:.0f} KiB of "
        f"memory (PSS) to the idle worker's {run.server_pss_idle_mb:.0f} MiB",
        [run],
    )
    return claim_record(
        1,
        what=f"{m.connections} keep-alive connections to one uvicorn worker (direct), a GET {path} sent on "
        f"every one at once, {m.connections_waves} times",
        runs=[run],
        yardstick=("connections open", "N connections, each with a request in flight", m.connections, "requests"),
        measured=("requests in flight at once, answered within 2 waits", held, "requests"),
        ratio=ratio,
        band="ratio >= 0.8",
        verdict=(verdict, reason),
    )


@experiment("claim-2", "the async pool on /io against concurrency / latency", claims=(2,), needs=("curves",))
def claim_2(lab: Context, curves: Curves) -> ClaimRecord:
    io = curves.io
    if io is None or "async" not in io.series:
        return unmeasured(2, "the async pool's /io curve could not be measured (see the failures)")
    points = io.series["async"].points
    little = [p for p in points if p.limits.binding == "little"]
    cpu_bound = [p for p in points if p.limits.binding == "cpu"]
    worst = min(little, key=lambda p: p.limits.little_ratio) if little else points[-1]
    top = max(little, key=lambda p: p.concurrency) if little else points[-1]
    ratio = worst.limits.little_ratio or 0.0
    knee = (
        f"; from c={cpu_bound[0].concurrency} on, the servers kept the CPU busy (>= {CPU_BUSY:.0%} of the "
        f"cores they could use), so the CPU, not the wait, set the pace "
        f"({cpu_bound[-1].limits.cpu_ratio:.0%} of cores / cpu-time at c={cpu_bound[-1].concurrency})"
        if cpu_bound
        else ""
    )
    if little:
        verdict = decide(
            ratio >= 0.8,
            f"at every concurrency where the wait is the limit (up to c={top.concurrency}), throughput was "
            f">= {ratio:.0%} of concurrency / latency{knee}",
            little,
        )
    else:
        verdict = (INCONCLUSIVE, "the CPU was busy at every level, so Little's law was never the binding limit")
    return claim_record(
        2,
        what=f"{io.path} on the async pool ({describe(io.series['async'].settings)}), direct, "
        f"concurrency {io.levels[0]} -> {io.levels[-1]} (the /io curve)",
        runs=points,
        # The point that decides the verdict: the furthest below its limit.
        yardstick=("Little's law", "concurrency / latency", worst.limits.little_rps or 0.0, "req/s"),
        measured=(f"throughput at c={worst.concurrency}", worst.throughput_rps, "req/s"),
        ratio=ratio,
        band=f"ratio >= 0.8 wherever the CPU was not busy (< {CPU_BUSY:.0%} of the usable cores)",
        verdict=verdict,
        chart="io",
    )


@experiment("claim-4", "the sync pool on /io against workers / latency", claims=(4,), needs=("curves",))
def claim_4(lab: Context, curves: Curves) -> ClaimRecord:
    io = curves.io
    if io is None or "sync" not in io.series:
        return unmeasured(4, "the sync pool's /io curve could not be measured (see the failures)")
    settings = io.series["sync"].settings
    workers = int(settings["workers"])
    points = io.series["sync"].points
    full = [p for p in points if p.concurrency >= workers] or points[-1:]
    ratios = [p.limits.little_ratio for p in full]
    low, high = min(ratios), max(ratios)
    # The point that decides the verdict: the furthest outside the band (or nearest its edge).
    worst = max(full, key=lambda p: max(LOW - p.limits.little_ratio, p.limits.little_ratio - HIGH))
    top = full[-1]
    p99 = f"{top.latency_ms.p99:.0f} ms"
    if top.latency_censored:  # the slowest requests were still waiting when the run ended
        p99 = (
            f">= {p99}, censored: the slowest were still queued when the run ended; on average a request "
            f"waited c / throughput = {top.concurrency / max(top.throughput_rps, 1e-9):.1f} s"
        )
    return claim_record(
        4,
        what=f"{io.path} on the sync pool ({describe(settings)}), direct, concurrency "
        f"{io.levels[0]} -> {io.levels[-1]} (the /io curve)",
        runs=points,
        yardstick=("Little's law", "workers / latency", worst.limits.little_rps or 0.0, "req/s"),
        measured=(f"throughput at c={worst.concurrency}", worst.throughput_rps, "req/s"),
        ratio=worst.limits.little_ratio,
        band=f"{LOW} <= ratio <= {HIGH} at every concurrency >= workers",
        verdict=decide(
            low >= LOW and high <= HIGH,
            f"with {workers} workers and more requests than workers, throughput stayed at "
            f"{low:.0%}-{high:.0%} of workers / latency however many requests waited (p99 at "
            f"c={top.concurrency}: {p99})",
            full,
        ),
        chart="io",
    )
