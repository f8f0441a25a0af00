"""Claim 7: sync workers on CPU-bound work, against the utilisation law.

The yardstick is ``cores / cpu-seconds-per-request`` with the CPU time measured on the
server, taken at its cheapest on the curve.
"""

from __future__ import annotations

from ..records import ClaimRecord, Curves
from ..registry import Context, experiment
from ..verdicts import INCONCLUSIVE, claim_record, decide, describe, unmeasured


@experiment("claim-7", "sync workers on /cpu against cores / cpu-time", claims=(7,), needs=("curves",))
def claim_7(lab: Context, curves: Curves) -> ClaimRecord:
    cpu = curves.cpu
    if cpu is None or "sync" not in cpu.series:
        return unmeasured(7, "the sync pool's /cpu curve could not be measured (see the failures)")
    settings = cpu.series["sync"].settings
    points = cpu.series["sync"].points
    busy = [p for p in points if p.concurrency >= lab.cores] or points[-1:]
    worst = min(busy, key=lambda p: p.limits.cpu_ratio or 0.0)
    top = busy[-1]
    ratio = worst.limits.cpu_ratio or 0.0
    if worst.limits.cpu_rps is None:
        verdict = (INCONCLUSIVE, f"no CPU time was measured on the sync pool at c={worst.concurrency}")
    else:
        verdict = decide(
            ratio >= 0.8,
            f"with at least as many requests as cores, sync workers reached >= {ratio:.0%} "
            f"of cores / cpu-time ({top.limits.cpu_ms_per_request_ref:.1f} ms of CPU a request at best, "
            f"{top.cpu_ms_per_request:.1f} ms at c={top.concurrency}; "
            f"{top.limits.cores_available:.2f} cores free of the generator)",
            busy,
        )
    return claim_record(
        7,
        what=f"{cpu.path} on the sync pool ({describe(settings)}), direct, concurrency "
        f"{cpu.levels[0]} -> {cpu.levels[-1]} (the /cpu curve); CPU time per request measured "
        "as the pool's CPU seconds / requests, the yardstick taking the lowest on the curve",
        runs=points,
        # The point that decides the verdict: the furthest below its limit.
        yardstick=("utilisation law", "cores / cpu-seconds-per-request", worst.limits.cpu_rps or 0.0, "req/s"),
        measured=(f"throughput at c={worst.concurrency}", worst.throughput_rps, "req/s"),
        ratio=ratio,
        band="ratio >= 0.8 at every concurrency >= cores",
        verdict=verdict,
        chart="cpu",
    )
