"""The peers: what users would run instead of twinstack's pools, measured on the same workloads.

``uvicorn --workers N``, gunicorn's own ``-k asgi`` worker and Granian for the ASGI app;
gunicorn with its defaults and Granian for the WSGI app. Each contender runs several short
rounds, interleaved; its row is its median round, ranked beside twinstack's own
configurations, and a peer is said to beat twinstack only where every one of its rounds beat
every round of twinstack's best (otherwise the two are a tie on this machine).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

from twinstack_runtime.ports import free_port

from .procs import LabError, Server, argv
from .records import PeerRow, Peers, RoundsRow, Run, Settings, Workload
from .registry import Context, Phase, experiment

Row = TypeVar("Row", bound=RoundsRow)


# Last of those that use the curves' gthread and gevent servers: it stops them.
@experiment("peers", "the peers: what users would pick instead, same apps", phase=Phase.EDGE, after=("proxy",))
def peers(lab: Context) -> Peers:
    m = lab.mode
    n = lab.cores
    ctl = lab.scratch / "peers-ctl"
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
    candidates = []
    for name, (command, settings) in specs.items():
        port = free_port()
        candidates.append(lab.peer(name, command(port), settings, port))
    # A peer that will not start is reported; the others are still measured.
    errors = lab.servers.start_each(*candidates)
    for name, exc in errors.items():
        lab.failed(f"peer {name}", exc)
    peers = [server for server in candidates if server.name not in errors]
    curve = lab.stack.curves
    contenders = {
        "ASGI": [("twinstack async pool", lab.stack.async_pool)],
        "WSGI": [
            ("twinstack sync pool", lab.stack.sync_pool),
            *[(f"twinstack {k}", curve[k]) for k in ("gthread", "gevent") if lab.servers.alive(curve[k])],
        ],
    }
    for server in peers:
        contenders[str(server.settings["interface"])].append((server.name, server))
    out = Peers(rounds=m.peer_rounds, duration_s=m.peer_duration_s)
    try:
        for workload, path, c in (
            ("io", f"/io?delay_ms={m.io_delay_ms}", m.peer_io_concurrency),
            ("cpu", f"/cpu?work={m.cpu_work}", m.peer_cpu_concurrency),
        ):
            lab.section(f"peers: {path}, c={c}, {m.peer_rounds} rounds")
            for group, entries in contenders.items():
                rows = _rank(lab, group, entries, path, c)
                out.groups.setdefault(group, {})[workload] = Workload(path=path, concurrency=c, rows=rows)
    finally:
        lab.servers.stop(*peers, curve["gthread"], curve["gevent"])
    return out


# A contender of interleaved rounds: its name, the wrk label, the URL, the servers it loads, and
# the settings its runs record.
Contender = tuple[str, str, str, list[Server], Settings | None]


def interleaved_rounds(lab: Context, contenders: list[Contender], c: int, what: str) -> dict[str, list[Run]]:
    """``lab.mode.peer_rounds`` rounds of every contender, each round in a different order: a
    drift of the machine (another tenant, a warm cache) is shared out instead of landing on one
    contender. One whose run fails is reported (as ``what`` says it, ``{name}`` its name) and
    left out; the others go on."""
    m = lab.mode
    rounds: dict[str, list[Run]] = {name: [] for name, *_ in contenders}
    for i in range(m.peer_rounds):
        for name, label, url, watch, settings in contenders[i % len(contenders) :] + contenders[: i % len(contenders)]:
            if name not in rounds:
                continue
            try:
                rounds[name].append(lab.gen.wrk(label, url, c, m.peer_duration_s, watch, settings))
            except LabError as exc:
                lab.failed(what.replace("{name}", name), exc)
                del rounds[name]
    return rounds


def _rank(lab: Context, group: str, entries: list[tuple[str, Server]], path: str, c: int) -> list[PeerRow]:
    """Every contender's rounds, interleaved, as rows best first. A contender whose run fails
    is reported and left out of this ranking; the others are still ranked."""
    contenders = [(name, f"{group} {name} {path}", server.base_url + path, [server], None) for name, server in entries]
    rounds = interleaved_rounds(lab, contenders, c, f"peer {{name}} on {path}")
    rows = []
    for name, server in entries:
        if name in rounds:
            twinstack = name.startswith("twinstack")
            rows.append(combine(rounds[name], PeerRow, peer=name, settings=server.settings, twinstack=twinstack))
    rows.sort(key=lambda r: r.throughput_rps, reverse=True)
    for rank, row in enumerate(rows, 1):
        row.rank = rank
    return rows


def combine(rounds: Sequence[Run], model: type[Row], **fields: object) -> Row:
    """One contender's rounds as one row of ``model``: the round with the median throughput (the
    lower one of an even count, so every figure of the row comes from one real run), every
    round's throughput beside it, and the flags of any round that could not be trusted."""
    ordered = sorted(rounds, key=lambda r: r.throughput_rps)
    rps = [r.throughput_rps for r in rounds]
    return ordered[(len(ordered) - 1) // 2].extended(
        model,
        rounds_rps=[round(x, 1) for x in rps],
        rps_low=min(rps),
        rps_high=max(rps),
        generator_saturated=any(r.generator_saturated for r in rounds),
        settled=all(r.settled for r in rounds),
        **fields,
    )
