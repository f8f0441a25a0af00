"""The curves: throughput and p99 against concurrency on ``/io`` and ``/cpu``, for each serving
model (the async pool, the sync pool, a gthread and a gevent pool), each point beside its
physical limits. Claims 2, 4 and 7 are read off them."""

from __future__ import annotations

from .procs import LabError
from .records import Curve, Curves, Series
from .registry import Context, Phase, experiment


@experiment("curves", "throughput and p99 against concurrency, every serving model", phase=Phase.BASELINE)
def curves(lab: Context) -> Curves:
    """A configuration that will not start, or fails mid-curve, is reported and left out."""
    m = lab.mode
    servers = dict(lab.stack.curves)
    for name, exc in lab.servers.start_each(*servers.values()).items():
        lab.failed(f"curve server {name}", exc)
    servers = {kind: server for kind, server in servers.items() if lab.servers.alive(server)}
    out = Curves()
    for kind, path, levels in (
        ("io", f"/io?delay_ms={m.io_delay_ms}", m.io_levels),
        ("cpu", f"/cpu?work={m.cpu_work}", m.cpu_levels),
    ):
        lab.section(f"curve: {path} against concurrency {levels[0]} -> {levels[-1]}")
        series = {}
        wait_s = m.io_delay_ms / 1000 if kind == "io" else 0.0
        for name, server in list(servers.items()):
            try:
                points = [
                    lab.gen.wrk(f"{name} {path}", server.base_url + path, c, m.duration_s, [server], server.settings)
                    for c in levels
                ]
            except LabError as exc:  # recorded; the other configurations are still measured
                lab.failed(f"curve {kind} {name}", exc)
                lab.servers.stop(server)
                del servers[name]  # nor measured on the next curve
                continue
            # What a request costs at best on this server and path: the utilisation law's yardstick.
            ref = min((p.cpu_ms_per_request for p in points if p.cpu_ms_per_request > 0), default=0.0)
            for p in points:
                p.limits = lab.limits(p, server.settings, p.concurrency, wait_s, cpu_ms_ref=ref)
            series[name] = Series(settings=server.settings, points=points)
        setattr(out, kind, Curve(path=path, levels=list(levels), series=series))
    return out
