"""Claims 3, 9 and 14: CPU work, a blocking call or a blocking database driver inside
``async def`` stalls every request on that worker; a process pool or ``asyncio.to_thread`` is
the fix.

One experiment shape serves both: p99 of short waits on one uvicorn worker, alone, beside the
anti-pattern, and beside its fix.
"""

from __future__ import annotations

import json
import urllib.request

from ..records import ClaimRecord, Run
from ..registry import Context, experiment
from ..verdicts import claim_record, decide


def _stall(lab: Context, label: str, probe: str, interferers: list[tuple[str, str]]) -> list[Run]:
    """p99 of concurrent probe requests on one worker, alone and beside each interferer."""
    m = lab.mode
    server = lab.async_one()
    runs = []
    for name, path in [("alone", ""), *interferers]:
        background = (server.base_url + path, 1) if path else None
        run = lab.gen.wrk(
            f"{label}: /io beside {name}",
            server.base_url + probe,
            8,
            m.duration_s,
            [server],
            {**server.settings, "beside": path or "nothing"},
            background=background,
        )
        run.beside = name
        runs.append(run)
    return runs


# After claim 6: the process pool these start would add to the one-worker server's memory.
@experiment("claims-3-9", "CPU work and a blocking call inside async def", claims=(3, 9), after=("claims-5-6",))
def claims_3_and_9(lab: Context) -> list[ClaimRecord]:
    m = lab.mode
    server = lab.async_one()
    probe = "/io?delay_ms=20"
    work = 60_000 if m.name != "tiny" else 30_000
    with urllib.request.urlopen(f"{server.base_url}/lab/cpu-in-loop?work={work}", timeout=30) as resp:
        cpu_ms = json.loads(resp.read())["cpu_ms"]
    # The process pool starts on first use; do not measure its start-up.
    urllib.request.urlopen(f"{server.base_url}/lab/cpu-in-process-pool?work=1", timeout=60).read()

    lab.section(f"claim 3: /io p99 on one worker beside CPU work ({cpu_ms:.0f} ms) inside async def")
    claim3 = _stall_claim(
        lab,
        3,
        "cpu",
        probe,
        cpu_ms,
        ("CPU in async def (anti-pattern)", f"/lab/cpu-in-loop?work={work}"),
        ("CPU in a process pool (fix)", f"/lab/cpu-in-process-pool?work={work}"),
        what=f"one uvicorn worker (direct): wrk keeps 8 GET {probe} in flight while a second wrk sends one "
        f"request at a time to an endpoint that hashes for {cpu_ms:.0f} ms; alone, beside "
        "/lab/cpu-in-loop (CPU inside async def), beside /lab/cpu-in-process-pool (the fix)",
        # The claim is the stall; the fix is shown beside it.
        fix_decides=False,
    )
    block_ms = 100.0
    lab.section(f"claim 9: /io p99 on one worker beside a {block_ms:.0f} ms blocking call in async def")
    claim9 = _stall_claim(
        lab,
        9,
        "blocking",
        probe,
        block_ms,
        ("time.sleep in async def (anti-pattern)", f"/lab/blocking-sleep?delay_ms={block_ms:.0f}"),
        ("asyncio.to_thread (fix)", f"/lab/to-thread-sleep?delay_ms={block_ms:.0f}"),
        what=f"one uvicorn worker (direct): 8 GET {probe} in flight; alone, beside /lab/blocking-sleep "
        f"(time.sleep({block_ms / 1000}) inside async def), beside /lab/to-thread-sleep "
        "(the same call in asyncio.to_thread)",
        fix_decides=True,
    )
    return [claim3, claim9]


# After claims 3 and 9: the same one-worker server, the same probe.
@experiment("claim-14", "a blocking database driver inside async def", claims=(14,), after=("claims-3-9",))
def claim_14(lab: Context) -> ClaimRecord:
    query_ms = 100.0
    lab.section(f"claim 14: /io p99 on one worker beside a {query_ms:.0f} ms query on a sync driver in async def")
    return _stall_claim(
        lab,
        14,
        "blocking-db",
        "/io?delay_ms=20",
        query_ms,
        ("a sync driver in async def (anti-pattern)", f"/lab/blocking-db?delay_ms={query_ms:.0f}"),
        ("the sync driver in asyncio.to_thread (fix)", f"/lab/to-thread-db?delay_ms={query_ms:.0f}"),
        what=f"one uvicorn worker (direct) and the lab's PostgreSQL: 8 GET /io?delay_ms=20 in flight; alone, "
        f"beside /lab/blocking-db (SELECT pg_sleep({query_ms / 1000}) on SQLAlchemy's sync engine inside async "
        "def), beside /lab/to-thread-db (the same call in asyncio.to_thread); GET /db, the async driver, is the "
        "deployment's way",
        fix_decides=True,
    )


def _stall_claim(
    lab: Context,
    claim: int,
    label: str,
    probe: str,
    cost_ms: float,
    anti: tuple[str, str],
    fix: tuple[str, str],
    *,
    what: str,
    fix_decides: bool,
) -> ClaimRecord:
    """p99 of the probe alone, beside the anti-pattern, beside its fix; the anti-pattern
    stalls when it adds at least half its own cost to the probe's p99."""
    runs = _stall(lab, label, probe, [anti, fix])
    base, stalled, fixed = (r.latency_ms.p99 for r in runs)
    stalls = stalled - base >= 0.5 * cost_ms
    fixes = fixed - base < 0.5 * cost_ms
    band = "ratio >= 0.5: p99 grows by at least half the blocking call's duration"
    return claim_record(
        claim,
        what=what,
        runs=runs,
        yardstick=("one blocking call", "its own duration", cost_ms, "ms"),
        measured=(f"p99 added beside {anti[0]}", stalled - base, "ms"),
        ratio=(stalled - base) / cost_ms if cost_ms else 0.0,
        band=band + (", and with the fix by less than half" if fix_decides else ""),
        verdict=decide(
            stalls and (fixes or not fix_decides),
            f"p99 of 20 ms waits: {base:.0f} ms alone, {stalled:.0f} ms beside {anti[0]} "
            f"({cost_ms:.0f} ms a call), {fixed:.0f} ms beside {fix[0]}",
            runs,
        ),
        chart="stall",
    )
