"""What twinstack's own layers cost per request, as ratios of references measured in the same run.

For each pool, on its own gunicorn.conf.py (same worker class, worker count, logging set-up):
- a bare app (bench/bare_app.py: one ``/health`` route, nothing else): the reference;
- twinstack's app as deployed (access lines at INFO into a file, metrics, request ids);
- the same with one piece of per-request instrumentation off at a time (``TWINSTACK_ACCESS_LOG``,
  ``TWINSTACK_METRICS``, ``TWINSTACK_REQUEST_ID``), then all three off;
- for the async pool, uvicorn-worker's plain worker instead of twinstack's (which joins the
  writes of one response, fastapi_service/worker.py);
- twinstack's app through twinstack's nginx configuration, and the bare app through a minimal
  nginx proxy (keep-alive, no log), both in an nginx of the experiment's own.
Each contender runs several short rounds, interleaved, and its row is its median round
(``peers.combine``). Then waits through nginx against Little's law (``/async/io``).

The targets are ratios; where one is not reached, the record names what bound the run: the
CPU of which process, the load generator, or nothing that was saturated.
"""

from __future__ import annotations

from twinstack_runtime.ports import free_port

from .peers import combine, interleaved_rounds
from .procs import LabError, Server
from .records import LittleRun, Overhead, OverheadPool, OverheadRow, Run, Target
from .registry import Context, Phase, experiment

BARE = "bare app"
TWINSTACK = "twinstack"
# The switches, one at a time (ServiceSettings in twinstack_runtime/settings.py).
PIECES = {
    "access line": {"TWINSTACK_ACCESS_LOG": "false"},
    "metrics": {"TWINSTACK_METRICS": "false"},
    "request id": {"TWINSTACK_REQUEST_ID": "false"},
}
ALL_OFF = "twinstack, all three off"
PLAIN_WORKER = "twinstack on uvicorn-worker's plain worker"
THROUGH_NGINX = "twinstack through twinstack's nginx"
BARE_THROUGH_NGINX = "bare app through a minimal nginx proxy"
# A box this busy had no CPU left: its processes' CPU is what bound the run.
BOX_BUSY = 0.9


@experiment("overhead", "what twinstack's own layers cost per request", phase=Phase.EDGE)
def overhead(lab: Context) -> Overhead:
    m = lab.mode
    ports = {name: free_port() for name in ("bare-async", "bare-sync", "twinstack-async", "twinstack-sync")}
    http_port, proxy_port = free_port(), free_port()
    env = {
        "TWINSTACK_HTTP_PORT": str(http_port),
        "TWINSTACK_NGINX_STATUS_LISTEN": f"127.0.0.1:{free_port()}",  # beside the lab's own nginx
        "TWINSTACK_ASYNC_UPSTREAM": f"127.0.0.1:{ports['twinstack-async']}",
        "TWINSTACK_SYNC_UPSTREAM": f"127.0.0.1:{ports['twinstack-sync']}",
        "TWINSTACK_BENCH_BARE_ASYNC_UPSTREAM": f"127.0.0.1:{ports['bare-async']}",
        "TWINSTACK_BENCH_BARE_SYNC_UPSTREAM": f"127.0.0.1:{ports['bare-sync']}",
        "TWINSTACK_BENCH_PROXY_PORT": str(proxy_port),
        "TWINSTACK_WEB_ROOT_COPY": "false",  # the lab's own nginx published it already
    }
    nginx = lab.render_nginx("overhead-nginx", "nginx-overhead.conf.template", http_port, env)
    with lab.servers.started(nginx):
        pools = {
            service: _pool(lab, service, ports, nginx, f"http://127.0.0.1:{http_port}", proxy_port)
            for service in ("async", "sync")
        }
    return Overhead(
        rounds=m.peer_rounds,
        duration_s=m.peer_duration_s,
        concurrency=m.proxy_concurrency,
        pools=pools,
        targets=targets(pools),
    )


def _contenders(lab: Context, service: str, ports: dict[str, int]) -> list[tuple[str, Server]]:
    bare_app = "bench.bare_app:fastapi_app()" if service == "async" else "bench.bare_app:flask_app()"
    contenders = [
        (BARE, lab.pool(f"bare-{service}", service, port=ports[f"bare-{service}"], log_level="info", app=bare_app)),
        (TWINSTACK, lab.pool(f"twinstack-{service}", service, port=ports[f"twinstack-{service}"], log_level="info")),
    ]
    for piece, switch in PIECES.items():
        name = f"{service}-no-{piece.replace(' ', '-')}"
        contenders.append((f"twinstack, {piece} off", lab.pool(name, service, log_level="info", env=switch)))
    all_off = {k: v for switch in PIECES.values() for k, v in switch.items()}
    contenders.append((ALL_OFF, lab.pool(f"{service}-all-off", service, log_level="info", env=all_off)))
    if service == "async":
        plain = lab.pool(f"{service}-plain-worker", service, log_level="info")
        plain.argv += ["-k", "uvicorn_worker.UvicornWorker"]
        plain.settings["worker_class"] = "uvicorn_worker.UvicornWorker"
        contenders.append((PLAIN_WORKER, plain))
    return contenders


def _pool(
    lab: Context, service: str, ports: dict[str, int], nginx: Server, stack_url: str, proxy_port: int
) -> OverheadPool:
    m = lab.mode
    contenders = _contenders(lab, service, ports)
    errors = lab.servers.start_each(*(server for _, server in contenders))
    for name, exc in errors.items():
        lab.failed(f"overhead: {name}", exc)
    running = [(label, server) for label, server in contenders if server.name not in errors]
    servers = dict(running)
    # (label, url, the processes it loads, the pool's settings)
    runs = [(label, server.base_url + "/health", [server]) for label, server in running]
    if TWINSTACK in servers:
        runs.append((THROUGH_NGINX, f"{stack_url}/{service}/health", [servers[TWINSTACK], nginx]))
    if BARE in servers:
        runs.append((BARE_THROUGH_NGINX, f"http://127.0.0.1:{proxy_port}/{service}/health", [servers[BARE], nginx]))
    lab.section(
        f"overhead, {service} pool: GET /health, c={m.proxy_concurrency}, {len(runs)} contenders, "
        f"{m.peer_rounds} rounds"
    )
    measured = [(label, f"{service}: {label}", url, watch, watch[0].settings) for label, url, watch in runs]
    try:
        rounds = interleaved_rounds(lab, measured, m.proxy_concurrency, f"overhead: {service} {{name}}")
        io: list[LittleRun] = []
        if service == "async" and TWINSTACK in servers:
            try:
                io = little(lab, stack_url, [servers[TWINSTACK], nginx])
            except LabError as exc:  # recorded; the /health rows stand
                lab.failed("overhead: /async/io through nginx", exc)
    finally:
        lab.servers.stop(*(server for _, server in contenders))
    rows = [combine(rounds[label], OverheadRow, contender=label) for label, *_ in runs if rounds.get(label)]
    by = {row.contender: row for row in rows}
    for row in rows:
        row.ratio_to_bare = _ratio(row, by.get(BARE))
        row.ratio_to_twinstack = _ratio(row, by.get(TWINSTACK))
        if row.contender in (THROUGH_NGINX, BARE_THROUGH_NGINX):
            row.ratio_to_direct = _ratio(row, by.get(TWINSTACK if row.contender == THROUGH_NGINX else BARE))
    return OverheadPool(rows=rows, io=io)


def _ratio(row: Run, reference: Run | None) -> float:
    if not reference or not reference.throughput_rps:
        return 0.0
    return round(row.throughput_rps / reference.throughput_rps, 4)


def little(lab: Context, stack_url: str, watch: list[Server]) -> list[LittleRun]:
    """``/async/io`` through twinstack's nginx at the mode's (delay, concurrency) points, each
    against Little's law: ``concurrency`` requests always in flight, each waiting ``delay``,
    cannot finish faster than ``concurrency / delay`` per second.

    Two things about the generator, not the server, are taken out of the figure judged:
    - Its start. wrk opens every connection at once; requests that all wait the same time in a
      closed loop then stay in lockstep for the whole run, and each worker meets its share of
      them in one burst per wait: the burst's queue, not the steady state. The judged runs
      spread each connection's first request over one wait (bench/wrk_stagger.lua), as
      independent clients arrive; one run at the same point with wrk's burst start is kept
      beside them to show the difference.
    - Its end. wrk stops mid-wait, so its count misses up to one round of waits per connection
      (a 5 s run of 1 s waits counts 4 rounds, not 5). The throughput judged is the steady one,
      ``concurrency / mean latency`` (Little's law read the other way, exact for a closed loop
      that keeps every connection busy); the count is recorded too."""
    m = lab.mode
    runs = []
    points = [(d, c, d) for d, c in m.overhead_io] + [(d, c, 0) for d, c in m.overhead_io[-1:]]
    for delay_ms, c, stagger_ms in points:
        duration = max(m.duration_s, 3 * delay_ms // 1000, 2)
        start = "spread over one wait" if stagger_ms else "all at once (wrk's default)"
        run = lab.gen.wrk(
            f"through nginx: /async/io?delay_ms={delay_ms}, connections starting {start}",
            f"{stack_url}/async/io?delay_ms={delay_ms}", c, duration + (1 if stagger_ms else 0), watch,
            watch[0].settings, stagger_ms=stagger_ms,
        )  # fmt: skip
        mean_s = run.latency_ms.mean / 1000
        little_rps = c / (delay_ms / 1000)
        steady_rps = round(c / mean_s, 1) if mean_s > 0 else 0.0
        runs.append(
            run.extended(
                LittleRun,
                delay_ms=delay_ms,
                staggered=bool(stagger_ms),
                little_rps=little_rps,
                steady_rps=steady_rps,
                little_ratio=round(steady_rps / little_rps, 4) if run.errors == 0 else 0.0,
            )
        )
    return runs


# --- the targets ----------------------------------------------------------------------------
def binds(run: Run) -> str:
    """What set the pace of one run, from what it measured: the box's CPUs (and which processes
    used them), the load generator, or nothing saturated (the wait itself, or queueing)."""
    by = sorted(run.server_cpu_cores_by.items(), key=lambda kv: kv[1], reverse=True)
    users = ", ".join(f"{name} {cores:.2f} cores" for name, cores in by)
    users += f", load generator {run.generator_cpu_cores:.2f} cores"
    if run.generator_saturated:
        return f"the load generator's CPU (it, not the server, set the pace): {users}"
    if run.box_saturated or run.box_cpu_utilisation >= BOX_BUSY:
        return f"the box's CPUs ({run.box_cpu_utilisation:.0%} busy): {users}"
    return f"no CPU was saturated (box {run.box_cpu_utilisation:.0%} busy: {users})"


# (key, what, target, pool, the measured row, its reference) for the /health ratios.
HEALTH_TARGETS = (
    ("async-vs-bare", "twinstack's async pool, straight to it, vs the bare FastAPI app", 0.75, "async", TWINSTACK,
     BARE),
    ("sync-vs-bare", "twinstack's sync pool, straight to it, vs the bare Flask app", 0.75, "sync", TWINSTACK, BARE),
    ("async-nginx", "/async/health through twinstack's nginx vs straight to the pool", 0.85, "async", THROUGH_NGINX,
     TWINSTACK),
    ("sync-nginx", "/sync/health through twinstack's nginx vs straight to the pool", 0.85, "sync", THROUGH_NGINX,
     TWINSTACK),
)  # fmt: skip
# Little's law targets by concurrency of the mode's I/O points, in order.
IO_TARGETS = (0.97, 0.90, 0.95)


def targets(pools: dict[str, OverheadPool]) -> list[Target]:
    out = []
    for key, what, target, service, measured, reference in HEALTH_TARGETS:
        rows = {r.contender: r for r in pools.get(service, OverheadPool()).rows}
        row, ref = rows.get(measured), rows.get(reference)
        if not row or not ref or not ref.throughput_rps:
            out.append(Target(key=key, what=what, target=target, binds="not measured (see the failures)"))
            continue
        ratio = row.throughput_rps / ref.throughput_rps
        figures = f"{row.throughput_rps:,.0f} vs {ref.throughput_rps:,.0f} req/s"
        bare_proxied = rows.get(BARE_THROUGH_NGINX)
        if measured == THROUGH_NGINX and bare_proxied and bare_proxied.ratio_to_direct:
            # What nginx alone costs here: the bare app through a proxy that does nothing else.
            figures += f"; the bare app through a minimal nginx: {bare_proxied.ratio_to_direct:.2f} of direct"
        out.append(Target(key=key, what=what, target=target, measured=round(ratio, 4), met=ratio >= target,
                          figures=figures, binds=binds(row)))  # fmt: skip
    judged = [run for run in pools.get("async", OverheadPool()).io if run.staggered]
    for run, target in zip(judged, IO_TARGETS, strict=False):
        out.append(Target(
            key=f"io-{run.delay_ms}ms-c{run.concurrency}",
            what=f"/async/io?delay_ms={run.delay_ms} through nginx at c={run.concurrency} vs Little's law",
            target=target, measured=run.little_ratio, met=run.little_ratio >= target,
            figures=f"{run.steady_rps:,.0f} req/s steady ({run.throughput_rps:,.0f} counted) vs {run.little_rps:,.0f}",
            binds=binds(run),
        ))  # fmt: skip
    return out
