"""What nginx costs and saves in front of the pools: the proxy hop, and static files.

The same ``/health`` direct and through nginx (upstream keep-alive on and off, and twinstack's
own configuration), then mixed user traffic through nginx from Locust; the landing page's CSS
from nginx and from Python workers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from twinstack_runtime.serving import async_workers, sync_workers

from .procs import LabError, argv, free_port

if TYPE_CHECKING:
    from .lab import Lab


def proxy(lab: Lab) -> list[dict]:
    m = lab.mode
    c = m.proxy_concurrency
    lab.section(f"proxy: GET /health direct and through nginx, c={c}")
    pools = [("async", lab.async_pool), ("sync", lab.sync_pool)]
    gthread = lab.curve_servers()["gthread"]
    if lab.servers.alive(gthread):
        pools.append(("gthread", gthread))
    runs = []
    for name, pool in pools:
        paths = [
            ("direct", f"{pool.base_url}/health", [pool]),
            ("nginx, upstream keep-alive", f"http://127.0.0.1:{lab.proxy_port}/keepalive/{name}/health", None),
            ("nginx, no upstream keep-alive", f"http://127.0.0.1:{lab.proxy_port}/close/{name}/health", None),
        ]
        if name != "gthread":  # twinstack's nginx routes /async/ and /sync/ only
            paths.append(("twinstack nginx config", f"http://127.0.0.1:{lab.stack.http_port}/{name}/health", None))
        for label, url, watch in paths:
            run = lab.gen.wrk(
                f"{name}: {label}", url, c, m.duration_s, watch or [pool, lab.nginx_server], pool.settings
            )
            run["pool"], run["path_kind"] = name, label
            runs.append(run)
        direct = runs[-len(paths)]
        for r in runs[-len(paths) :]:
            r["ratio_to_direct"] = (
                round(r["throughput_rps"] / direct["throughput_rps"], 4) if direct["throughput_rps"] else 0.0
            )
    duration = max(2, m.duration_s * 2)
    lab.section(f"mixed user traffic through nginx: Locust, {m.locust_users} users, {duration} s")
    try:
        mixed = lab.gen.locust(
            f"Locust: {m.locust_users} users, mixed traffic",
            f"http://127.0.0.1:{lab.stack.http_port}",
            m.locust_users,
            duration,
            [lab.nginx_server, lab.async_pool, lab.sync_pool],
            lab.out,
        )
    except LabError as exc:  # recorded; the wrk runs above stand
        lab.failed("proxy: Locust", exc)
        return runs
    mixed["pool"], mixed["path_kind"], mixed["ratio_to_direct"] = "both", "twinstack nginx config", 0.0
    runs.append(mixed)
    return runs


def static(lab: Lab) -> list[dict]:
    m = lab.mode
    c = m.proxy_concurrency
    asgi_port, wsgi_port = free_port(), free_port()
    ctl = lab.tmp / "static-ctl"
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
    runs = []
    with lab.servers.started(asgi, wsgi):
        for label, url, server in (
            ("nginx (lab server, no access log)", f"http://127.0.0.1:{lab.proxy_port}{asset}", lab.nginx_server),
            ("nginx (twinstack config)", f"http://127.0.0.1:{lab.stack.http_port}{asset}", lab.nginx_server),
            ("Python: Starlette StaticFiles on uvicorn workers", asgi.base_url + asset, asgi),
            ("Python: Flask static on gunicorn sync workers", wsgi.base_url + asset, wsgi),
        ):
            runs.append(lab.gen.wrk(label, url, c, m.duration_s, [server], server.settings))
    nginx_rps = runs[0]["throughput_rps"]
    for r in runs:
        r["ratio_to_nginx"] = round(r["throughput_rps"] / nginx_rps, 4) if nginx_rps else 0.0
    return runs
