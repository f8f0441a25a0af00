"""What nginx costs and saves in front of the pools: the box's ceiling, the proxy hop, and
static files.

nginx answering ``return 200`` without an app: the ceiling every other figure sits under. The
same ``/health`` direct and through nginx (upstream keep-alive on and off, and twinstack's own
configuration), then mixed user traffic through nginx from Locust; the landing page's CSS from
nginx and from Python workers.
"""

from __future__ import annotations

from twinstack_runtime.ports import free_port
from twinstack_runtime.serving import async_workers, sync_workers

from .procs import LabError, argv
from .records import ProxyRun, Run, StaticRun
from .registry import Context, Phase, experiment


@experiment("ceiling", "the box's ceiling: wrk against nginx `return 200`", phase=Phase.BASELINE)
def ceiling(lab: Context) -> Run:
    lab.section("the box's ceiling: wrk against nginx `return 200`")
    m, nginx = lab.mode, lab.stack.nginx
    url = f"{lab.stack.ceiling_url}/"
    return lab.gen.wrk("nginx return 200 (no app)", url, m.proxy_concurrency * 2, m.duration_s, [nginx], nginx.settings)


@experiment("proxy", "nginx in front: proxy cost and upstream keep-alive", phase=Phase.EDGE)
def proxy(lab: Context) -> list[ProxyRun]:
    m = lab.mode
    c = m.proxy_concurrency
    stack = lab.stack
    lab.section(f"proxy: GET /health direct and through nginx, c={c}")
    pools = [("async", stack.async_pool), ("sync", stack.sync_pool)]
    gthread = stack.curves["gthread"]
    if lab.servers.alive(gthread):
        pools.append(("gthread", gthread))
    runs: list[ProxyRun] = []
    for name, pool in pools:
        paths = [
            ("direct", f"{pool.base_url}/health", [pool]),
            ("nginx, upstream keep-alive", f"{stack.proxy_url}/keepalive/{name}/health", None),
            ("nginx, no upstream keep-alive", f"{stack.proxy_url}/close/{name}/health", None),
        ]
        if name != "gthread":  # twinstack's nginx routes /async/ and /sync/ only
            paths.append(("twinstack nginx config", f"{stack.url}/{name}/health", None))
        for label, url, watch in paths:
            run = lab.gen.wrk(f"{name}: {label}", url, c, m.duration_s, watch or [pool, stack.nginx], pool.settings)
            runs.append(run.extended(ProxyRun, pool=name, path_kind=label))
        direct = runs[-len(paths)]
        for r in runs[-len(paths) :]:
            r.ratio_to_direct = round(r.throughput_rps / direct.throughput_rps, 4) if direct.throughput_rps else 0.0
    # At least 5 s: Locust's own start and its users' first waits fit in it on a busy machine.
    duration = max(5, m.duration_s * 2)
    lab.section(f"mixed user traffic through nginx: Locust, {m.locust_users} users, {duration} s")
    try:
        mixed = lab.gen.locust(
            f"Locust: {m.locust_users} users, mixed traffic",
            stack.url,
            m.locust_users,
            duration,
            [stack.nginx, stack.async_pool, stack.sync_pool],
        )
    except LabError as exc:  # recorded; the wrk runs above stand
        lab.failed("proxy: Locust", exc)
        return runs
    runs.append(mixed.extended(ProxyRun, pool="both", path_kind="twinstack nginx config"))
    return runs


@experiment("static", "static files: nginx against a Python worker, the same bytes", phase=Phase.EDGE)
def static(lab: Context) -> list[StaticRun]:
    m = lab.mode
    c = m.proxy_concurrency
    asgi_port, wsgi_port = free_port(), free_port()
    ctl = lab.scratch / "static-ctl"
    ctl.mkdir(exist_ok=True)
    workers = {"asgi": async_workers(lab.cores), "wsgi": sync_workers(lab.cores)}
    asgi = lab.peer(
        "static-asgi",
        argv("gunicorn", "-k", "uvicorn_worker.UvicornWorker", "-w", workers["asgi"],
             "-b", f"127.0.0.1:{asgi_port}", "--control-socket", ctl / "asgi.ctl", "bench.static_app:asgi_app()"),
        {"server": "gunicorn", "worker_class": "uvicorn_worker.UvicornWorker", "workers": workers["asgi"],
         "app": "Starlette StaticFiles"},
        asgi_port,
    )  # fmt: skip
    wsgi = lab.peer(
        "static-wsgi",
        argv("gunicorn", "-w", workers["wsgi"], "-b", f"127.0.0.1:{wsgi_port}",
             "--control-socket", ctl / "wsgi.ctl", "bench.static_app:wsgi_app()"),
        {"server": "gunicorn", "worker_class": "sync", "workers": workers["wsgi"], "app": "Flask static folder"},
        wsgi_port,
    )  # fmt: skip
    asset = "/static/style.css"
    lab.section(f"static: {asset} from nginx and from Python, c={c}")
    nginx = lab.stack.nginx
    runs: list[StaticRun] = []
    with lab.servers.started(asgi, wsgi):
        for label, url, server in (
            ("nginx (lab server, no access log)", f"{lab.stack.proxy_url}{asset}", nginx),
            ("nginx (twinstack config)", f"{lab.stack.url}{asset}", nginx),
            ("Python: Starlette StaticFiles on uvicorn workers", asgi.base_url + asset, asgi),
            ("Python: Flask static on gunicorn sync workers", wsgi.base_url + asset, wsgi),
        ):
            runs.append(lab.gen.wrk(label, url, c, m.duration_s, [server], server.settings).extended(StaticRun))
    nginx_rps = runs[0].throughput_rps
    for r in runs:
        r.ratio_to_nginx = round(r.throughput_rps / nginx_rps, 4) if nginx_rps else 0.0
    return runs
