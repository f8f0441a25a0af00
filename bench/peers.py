"""The peers: what users would run instead of twinstack's pools, measured on the same workloads.

``uvicorn --workers N``, gunicorn's own ``-k asgi`` worker and Granian for the ASGI app;
gunicorn with its defaults and Granian for the WSGI app. Each row is ranked by throughput
beside twinstack's own configurations, whichever wins.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .procs import argv, free_port

if TYPE_CHECKING:
    from .lab import Lab


def peers(lab: Lab) -> dict:
    m = lab.mode
    n = lab.cores
    ctl = lab.tmp / "peers-ctl"
    ctl.mkdir(exist_ok=True)
    asgi, wsgi = "fastapi_service.main:create_app", "flask_service.main:create_app"
    quiet = ("--no-access-log", "--log-level", "warning")

    def granian(interface: str, app: str, port: int) -> list[str]:
        return argv("granian", "--interface", interface, "--factory", "--workers", n, *quiet, *bind(port), app)

    def bind(port: int) -> tuple[str, ...]:
        return ("--host", "127.0.0.1", "--port", str(port))

    def gunicorn(name: str, port: int, *args: object) -> list[str]:
        # gunicorn >= 25 opens a control socket at one per-user default path: one each.
        return argv("gunicorn", "-b", f"127.0.0.1:{port}", "--control-socket", ctl / f"{name}.ctl", *args)

    specs = {  # name: (argv for a port, settings); what each peer is when run as its docs say
        "uvicorn": (
            lambda port: argv("uvicorn", "--factory", asgi, "--workers", n, *quiet, *bind(port)),
            {"server": "uvicorn", "workers": n, "interface": "ASGI"},
        ),
        "gunicorn-asgi": (
            lambda port: gunicorn("asgi", port, "-k", "asgi", "-w", n, f"{asgi}()"),
            {"server": "gunicorn", "worker_class": "asgi (gunicorn's own)", "workers": n, "interface": "ASGI"},
        ),
        "granian-asgi": (
            lambda port: granian("asgi", asgi, port),
            {"server": "granian", "workers": n, "interface": "ASGI"},
        ),
        "gunicorn-defaults": (
            lambda port: gunicorn("defaults", port, f"{wsgi}()"),
            {"server": "gunicorn", "worker_class": "sync", "workers": 1, "interface": "WSGI", "note": "defaults"},
        ),
        "granian-wsgi": (
            lambda port: granian("wsgi", wsgi, port),
            {"server": "granian", "workers": n, "interface": "WSGI"},
        ),
    }
    peers = []
    for name, (command, settings) in specs.items():
        port = free_port()
        peers.append(lab.peer(name, command(port), settings, port))
    lab.servers.start(*peers)
    curve = lab.curve_servers()
    contenders = {
        "ASGI": [("twinstack async pool", lab.async_pool), *[(p.name, p) for p in peers[:3]]],
        "WSGI": [
            ("twinstack sync pool", lab.sync_pool),
            ("twinstack gthread", curve["gthread"]),
            ("twinstack gevent", curve["gevent"]),
            *[(p.name, p) for p in peers[3:]],
        ],
    }
    out: dict = {"groups": {}}
    for workload, path, c in (
        ("io", f"/io?delay_ms={m.io_delay_ms}", m.peer_io_concurrency),
        ("cpu", f"/cpu?work={m.cpu_work}", m.peer_cpu_concurrency),
    ):
        lab.section(f"peers: {path}, c={c}")
        for group, entries in contenders.items():
            rows = []
            for name, server in entries:
                run = lab.gen.wrk(f"{group} {name} {path}", server.base_url + path, c, m.duration_s, [server])
                run.update(peer=name, settings=server.settings, twinstack=name.startswith("twinstack"))
                rows.append(run)
            rows.sort(key=lambda r: r["throughput_rps"], reverse=True)
            for rank, row in enumerate(rows, 1):
                row["rank"] = rank
            out["groups"].setdefault(group, {})[workload] = {"path": path, "concurrency": c, "rows": rows}
    lab.servers.stop(*peers, curve["gthread"], curve["gevent"])
    return out
