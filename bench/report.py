"""The lab's report: one self-contained index.html (charts as inline SVG, no external file or
script), verdict table first, from the results.json it sits beside.

The page is bench/templates/report.html.j2, rendered by Jinja2 with autoescaping on: every text
of a run is escaped there, and only the charts (SVG that matplotlib wrote) are marked safe. This
module draws the charts and says in words and numbers what the template lays out (each table
as rows of cells, the peers' sentences); it writes no HTML.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import jinja2
import matplotlib
from markupsafe import Markup

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.ticker import FuncFormatter, NullFormatter

from . import dbpath
from .claims import tls
from .records import ClaimRecord, Curve, DbPath, DbPathPool, OverheadPool, Peers, Results, Run, Target, Workload
from .verdicts import NOISE

TEMPLATES = Path(__file__).with_name("templates")
plt.rcParams.update({"svg.fonttype": "none", "font.size": 9, "axes.grid": True, "grid.alpha": 0.3})
COLORS = {"async": "#1f77b4", "sync": "#d62728", "gthread": "#ff7f0e", "gevent": "#2ca02c"}
BADGE = {"holds": "#1a7f37", "does not hold": "#cf222e", "inconclusive": "#9a6700"}

CAPTIONS = {
    "io": "Left: requests per second against the number of requests in flight (both axes logarithmic). Solid: "
    "measured. Dashed, same colour: the physical limit of that configuration at that concurrency, the lower of "
    "Little's law (slots / latency: concurrency for an event loop or gevent, workers for sync, workers x threads "
    "for gthread) and the utilisation law (free cores / the lowest CPU seconds per request measured on that "
    "curve). A solid line on its dashed line is a server at its limit; below it, something else (queueing, the "
    "GIL, requests getting dearer under load, the generator) costs. Right: p99 latency; flat means requests do "
    "not wait for each other, rising means they queue. A hollow marker is a censored point: requests waited "
    "longer than a third of the run, so the slowest were still waiting when it ended and its p99 reads low.",
    "cpu": "The same axes for CPU-bound requests. Here the dashed limit is the utilisation law: the cores the "
    "servers could use (not busy with the load generator) divided by the least CPU time a request took on that "
    "server, measured. No configuration can beat it: adding concurrency past the knee only adds queueing, which "
    "the p99 panel shows, and a solid line sinking below the dashed one is each request costing more CPU.",
    "stall": "p99 latency of 20 ms waits on one event loop, alone and next to one interfering request at a time. "
    "The anti-patterns (red) add roughly their own duration to every other request; the fixes (green) do not.",
    "scaling": "Requests per second of 50 ms waits against the number of slots (sync workers, or threads of one "
    "gthread worker). Dashed: Little's law, slots / latency. Points on the line: every slot adds one request's worth.",
    "pool": "Requests per second of GET /db (one query holding a pooled database connection for the wait) "
    "against concurrency, for an async pool with few and with more connections a worker and for the sync pool. "
    "Dashed: Little's law with the connections as the slots, min(C, connections) / latency. Past the "
    "connections, more concurrency only queues for one: the pool, not the event loop, is the limit.",
    "memory": "Memory (PSS: shared pages split between the processes sharing them) per request in flight, holding "
    "the same number of concurrent requests three ways: the whole server's peak divided by the requests it held. "
    "The table beside it also gives what the requests added to the idle server.",
    "proxy": "Requests per second of GET /health, direct to each pool and through nginx with and without upstream "
    "keep-alive, and through twinstack's own nginx configuration (JSON access log, limits, headers).",
    "static": "Requests per second for the same CSS file from nginx and from Python workers.",
    "overhead": "Requests per second of GET /health (median round) for each contender on the same gunicorn "
    "configuration: the bare app, twinstack's app, twinstack's app with one piece of instrumentation off at a time, "
    "and both through nginx. The gap between a row and 'twinstack' is what that piece costs.",
    "dbpath": "CPU time of the server's processes per response served (microseconds, the median of its rounds) "
    "on each order route, for twinstack's app and for the same routes on the raw driver (psycopg and its pool, "
    "hand-written SQL) and on the same libraries used plainly (SQLAlchemy Core), each pool on its own "
    "gunicorn.conf.py with the same workers. The gap between twinstack's bar and the raw driver's is what the "
    "library layer costs a request; the table gives the ratio against its target.",
    "peers": "Requests per second (median round) of each server on the same app and workload, best first; twinstack's "
    "configurations are the darker bars.",
    "tls": "CPU time per request (median round) of nginx, of the async pool behind it and of the load generator, "
    "wrk, over plain HTTP (light) and HTTPS (dark), for each route with its connections kept alive, with a new "
    "connection per request (resuming the TLS session wrk offers), and with a new connection per request to the "
    "same HTTPS server with resumption off (every handshake full). The gap between a light bar and the dark one "
    "beside it is what TLS costs that request; the pool, behind nginx, sees plain HTTP either way.",
}


def _svg(fig) -> Markup:
    """The figure as inline SVG, marked safe: matplotlib escaped every label it wrote."""
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight")
    plt.close(fig)
    text = buf.getvalue()
    return Markup(text[text.index("<svg") :])


def _log_axes(ax, xticks: list[int], logy: bool = True) -> None:
    """Logarithmic axes labelled with plain numbers (1, 8, 512), not powers of ten."""
    plain = FuncFormatter(lambda v, _: f"{v:g}")
    ax.set_xscale("log", base=2)
    ax.set_xticks(xticks, [str(x) for x in xticks])
    ax.xaxis.set_minor_formatter(NullFormatter())
    if logy:
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(plain)
        ax.yaxis.set_minor_formatter(NullFormatter())


def chart_curve(curve: Curve, unit: str) -> Markup:
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
    for name, series in curve.series.items():
        points = series.points
        xs = [p.concurrency for p in points]
        color = COLORS.get(name)
        left.plot(xs, [max(p.throughput_rps, 0.1) for p in points], "o-", color=color, label=name)
        left.plot(xs, [max(p.limits.bound_rps, 0.1) for p in points], "--", color=color, alpha=0.6)
        p99 = [max(p.latency_ms.p99, 0.01) for p in points]
        right.plot(xs, p99, "o-", color=color, label=name)
        censored = [(x, y) for x, y, p in zip(xs, p99, points, strict=True) if p.latency_censored]
        if censored:
            right.plot(*zip(*censored, strict=True), "o", color=color, markerfacecolor="white", zorder=3)
    for ax in (left, right):
        _log_axes(ax, curve.levels)
        ax.set_xlabel("concurrency (requests in flight)")
    left.set_ylabel("requests / s (dashed: limit)")
    right.set_ylabel("p99 latency (ms)")
    left.set_title(f"{curve.path}: throughput {unit}")
    right.set_title(f"{curve.path}: p99")
    left.legend(fontsize=8)
    return _svg(fig)


def chart_stall(experiments: Sequence[ClaimRecord]) -> Markup:
    stall = [e for e in experiments if e.claim in (3, 9, 14) and e.runs]
    fig, axes = plt.subplots(1, len(stall), figsize=(5 * len(stall), 3.2), squeeze=False)
    for ax, exp in zip(axes[0], stall, strict=True):
        labels = [r.beside or "" for r in exp.runs]
        values = [r.latency_ms.p99 for r in exp.runs]
        ax.bar(range(len(values)), values, color=["#888888", "#cf222e", "#1a7f37"][: len(values)])
        ax.set_xticks(range(len(values)), [label.replace(" (", "\n(") for label in labels], fontsize=7)
        ax.set_ylabel("p99 of 20 ms waits (ms)")
        ax.set_title(f"claim {exp.claim}")
    return _svg(fig)


def chart_pool(exp: ClaimRecord) -> Markup:
    """Claim 12: throughput against concurrency for each pool, its connections' limit dashed."""
    fig, ax = plt.subplots(figsize=(6, 3.4))
    colors = ["#cf222e", "#1a7f37", COLORS["sync"]]
    for family, color in zip(dict.fromkeys(r.family for r in exp.runs), colors, strict=False):
        runs = [r for r in exp.runs if r.family == family]
        xs = [r.concurrency for r in runs]
        ax.plot(xs, [r.throughput_rps for r in runs], "o-", color=color, label=family)
        ax.plot(xs, [r.limits.little_rps if r.limits else 0 for r in runs], "--", color=color, alpha=0.6)
    _log_axes(ax, sorted({r.concurrency for r in exp.runs}), logy=False)
    ax.set_xlabel("concurrency")
    ax.set_ylabel("requests / s (dashed: min(C, connections) / latency)")
    ax.legend(fontsize=7)
    return _svg(fig)


def chart_scaling(exp: ClaimRecord) -> Markup:
    fig, ax = plt.subplots(figsize=(6, 3.4))
    for family, color in (("sync workers", COLORS["sync"]), ("gthread threads", COLORS["gthread"])):
        runs = [r for r in exp.runs if r.family == family]
        xs = [r.slots for r in runs]
        ax.plot(xs, [r.throughput_rps for r in runs], "o-", color=color, label=family)
        ax.plot(xs, [r.limits.little_rps for r in runs], "--", color=color, alpha=0.6)
    _log_axes(ax, sorted({r.slots for r in exp.runs}), logy=False)
    ax.set_xlabel("slots (workers, or threads of one worker)")
    ax.set_ylabel("requests / s (dashed: slots / latency)")
    ax.legend(fontsize=8)
    return _svg(fig)


def chart_tls(exp: ClaimRecord) -> Markup:
    """Claim 15: CPU per request of nginx and of wrk, plain beside HTTPS, for each route and connection."""
    cells = list(tls.pair_up(exp.runs).values())
    fig, axes = plt.subplots(1, 3, figsize=(12, 0.5 * len(cells) + 1.2), sharey=True)
    ys = range(len(cells))
    panels: tuple[tuple[str, Callable[[Run], float | None]], ...] = (
        ("nginx", lambda r: r.nginx_cpu_ms_per_request),
        ("the async pool", tls.pool_cpu_ms_per_request),
        ("wrk", lambda r: r.generator_cpu_ms_per_request),
    )
    for ax, (who, figure_of) in zip(axes, panels, strict=True):
        for offset, scheme, color in ((-0.2, "http", "#8fb3d9"), (0.2, "https", "#1f4e79")):
            values = [cell.median(lambda p, s=scheme, f=figure_of: f(getattr(p, s)) or 0.0) for cell in cells]
            ax.barh([y + offset for y in ys], values, height=0.4, color=color, label=scheme.upper())
        ax.set_xlabel(f"{who}: CPU ms per request")
    axes[0].set_yticks(list(ys), [f"{c.route}\n{c.kind}" for c in cells], fontsize=8)
    axes[0].invert_yaxis()
    axes[0].legend(fontsize=8)
    return _svg(fig)


DBPATH_COLORS = {dbpath.TWINSTACK: "#1f4e79", dbpath.RAW: "#8fb3d9", dbpath.PLAIN: "#ff9f4a"}


def chart_dbpath(result: DbPath) -> Markup:
    """The database path: CPU per request of each contender on each route, one panel a pool, on
    one scale (what the serving model changes shows between the panels)."""
    pools = [(service, pool) for service, pool in result.pools.items() if pool.rows]
    labels = list(dict.fromkeys(r.route for _, pool in pools for r in pool.rows))
    fig, axes = plt.subplots(
        1, len(pools), figsize=(5 * len(pools) + 1.5, 0.9 * len(labels) + 1.2), squeeze=False, sharex=True,
        sharey=True,
    )  # fmt: skip
    for ax, (service, pool) in zip(axes[0], pools, strict=True):
        for i, (contender, color) in enumerate(DBPATH_COLORS.items()):
            cpu = {r.route: r.cpu_us_per_request for r in pool.rows if r.contender == contender}
            ys = [y + (i - 1) * 0.27 for y in range(len(labels))]
            ax.barh(ys, [cpu.get(label, 0.0) for label in labels], height=0.27, color=color, label=contender)
        ax.set_xlabel("CPU µs per request (the server's processes)")
        ax.set_title(f"{service} pool, c={pool.concurrency}")
    axes[0][0].set_yticks(range(len(labels)), [label.replace(", ", ",\n") for label in labels], fontsize=8)
    axes[0][0].invert_yaxis()
    handles, names = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, names, fontsize=8, loc="upper center", ncol=len(names), bbox_to_anchor=(0.5, 0.0))
    return _svg(fig)


def chart_bars(labels: list[str], values: list[float], xlabel: str, dark: list[bool] | None = None) -> Markup:
    fig, ax = plt.subplots(figsize=(8, 0.35 * len(labels) + 0.8))
    colors = ["#1f4e79" if d else "#8fb3d9" for d in (dark or [True] * len(labels))]
    ax.barh(range(len(values)), values, color=colors)
    ax.set_yticks(range(len(values)), labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel(xlabel)
    return _svg(fig)


def _throughput_bars(runs: Sequence[Run]) -> Markup:
    return chart_bars([r.label for r in runs], [r.throughput_rps for r in runs], "requests / s")


# --- what the template lays out -----------------------------------------------------------------
@dataclass(frozen=True)
class Figure:
    svg: Markup
    caption: str


def figure(svg: Markup, key: str) -> Figure:
    return Figure(svg, CAPTIONS[key])


@dataclass(frozen=True)
class Note:
    """A remark beside a cell's figure, styled ``warn`` or ``muted``."""

    style: str
    text: str


@dataclass(frozen=True)
class Cell:
    text: str
    numeric: bool = False
    notes: tuple[Note, ...] = ()


@dataclass(frozen=True)
class Column:
    """A column a table of runs adds to every run's own: its header, its cell, right-aligned or not."""

    header: str
    value: Callable[[Run], object]
    numeric: bool = True


@dataclass(frozen=True)
class Table:
    head: list[str]
    rows: list[list[Cell]]
    saturated: list[str]
    """The runs where the load generator saturated its CPU: said under the table."""


RUN_HEAD = [
    "run", "tool", "conc.", "s", "req/s", "p50 ms", "p95 ms", "p99 ms", "errors", "server CPU (cores)",
    "CPU ms / req", "RSS MiB", "PSS MiB", "generator CPU (cores)",
]  # fmt: skip


def n(value: float, digits: int = 1) -> str:
    return f"{value:,.{digits}f}"


def runs_table(runs: Sequence[Run], extra: Sequence[Column] = ()) -> Table:
    """Every run's figures, one row each, then the columns ``extra`` adds."""
    rows = []
    for r in runs:
        lat = r.latency_ms
        flags = []
        if not r.settled:
            flags.append(Note("warn", "(started while the server was still busy)"))
        if r.latency_censored:
            flags.append(Note("muted", "(p99 censored: requests outlasted a third of the run)"))
        if r.background is not None:
            side = r.background
            flags.append(Note("muted", f"(beside it: {side.requests} interfering requests, {side.errors} errors)"))
        saturated = (Note("warn", "saturated"),) if r.generator_saturated else ()
        box = (Note("muted", "(box CPU-bound)"),) if r.box_saturated else ()
        rows.append([
            Cell(r.label, notes=tuple(flags)), Cell(r.tool), Cell(str(r.concurrency), True),
            Cell(n(r.duration_s), True), Cell(n(r.throughput_rps), True), Cell(n(lat.p50), True),
            Cell(n(lat.p95), True), Cell(n(lat.p99), True), Cell(f"{r.errors} / {r.requests}", True),
            Cell(n(r.server_cpu_cores, 2), True, box), Cell(n(r.cpu_ms_per_request, 2), True),
            Cell(n(r.server_rss_mb), True), Cell(n(r.server_pss_mb), True),
            Cell(n(r.generator_cpu_cores, 2), True, saturated),
            *(Cell(str(col.value(r)), col.numeric) for col in extra),
        ])  # fmt: skip
    return Table(
        head=RUN_HEAD + [col.header for col in extra],
        rows=rows,
        saturated=[r.label for r in runs if r.generator_saturated],
    )


def _limit(fmt: Callable[..., str]) -> Callable[[Run], str]:
    return lambda r: fmt(r.limits) if r.limits else "-"


LIMIT_COLUMNS = (
    Column("limit req/s", _limit(lambda lim: n(lim.bound_rps))),
    Column("limit", _limit(lambda lim: lim.binding), numeric=False),
    Column("ratio", _limit(lambda lim: f"{lim.ratio:.2f}")),
    Column("CPU busy", _limit(lambda lim: f"{lim.utilisation:.0%}")),
    Column("CPU / req vs best", _limit(lambda lim: f"{lim.cpu_cost_rise:.2f}x")),
)


def claim_columns(runs: Sequence[Run]) -> tuple[Column, ...]:
    """The columns a claim's own figures need, beside every run's."""
    cols: tuple[Column, ...] = LIMIT_COLUMNS if any(r.limits for r in runs) else ()
    if any(r.held_concurrency is not None for r in runs):
        cols += (Column("held at once", lambda r: "-" if r.held_concurrency is None else r.held_concurrency),)
    if any(r.pss_mb_per_request is not None for r in runs):
        cols += (
            Column("PSS MiB / request", lambda r: n(r.pss_mb_per_request, 2)),
            Column("added KiB / request", lambda r: n(r.pss_mb_added_per_request * 1024, 0)),
        )
    if any(r.finished_after_response is not None for r in runs):
        cols += (Column("jobs done after their 202", lambda r: f"{r.finished_after_response} / {r.requests}"),)
    if any(r.db_budget is not None for r in runs):
        cols += DATABASE_COLUMNS
    if any(r.nginx_cpu_ms_per_request is not None for r in runs):
        cols += TLS_COLUMNS
    if any(r.bound_by is not None for r in runs):
        cols += (Column("bound by", lambda r: r.bound_by or "-", numeric=False),)
    return cols


def _times(value: float | None) -> str:
    return f"{value:.2f}x" if value else "-"


def _cpu_by(run: Run) -> str:
    by = sorted(run.server_cpu_cores_by.items(), key=lambda kv: kv[1], reverse=True)
    return ", ".join(f"{name} {cores:.2f}" for name, cores in by)


# Claim 13: the connection budget beside every figure, and the database's own limit.
DATABASE_COLUMNS = (
    Column("round", lambda r: r.settings.get("round", "-")),
    Column("DB connections given", lambda r: r.db_budget or "-", numeric=False),
    Column("used / most at once", lambda r: f"{r.db_connections_used} / {r.db_connections_peak}"),
    Column("vs pgbench", lambda r: "-" if r.database_ratio is None else f"{r.database_ratio:.3f}x"),
)
# Claim 15: each run's scheme and connections, what its requests cost each process, its ratios to HTTP.
TLS_COLUMNS = (
    Column("round", lambda r: r.settings.get("round", "-")),
    Column("connections opened", lambda r: "-" if r.connections_opened is None else r.connections_opened),
    Column("TLS resumed", lambda r: "-" if not r.tls else r.tls_resumed),
    Column("protocol", lambda r: r.tls or "-", numeric=False),
    Column("opening a connection ms", lambda r: "-" if r.connect_ms is None else n(r.connect_ms, 3)),
    Column("nginx CPU ms / req", lambda r: n(r.nginx_cpu_ms_per_request or 0.0, 3)),
    Column("wrk CPU ms / req", lambda r: n(r.generator_cpu_ms_per_request or 0.0, 3)),
    Column("req/s vs HTTP", lambda r: _times(r.ratio_to_http)),
    Column("p99 vs HTTP", lambda r: _times(r.p99_ratio_to_http)),
    Column("CPU by process (cores)", lambda r: _cpu_by(r), numeric=False),
)
OVERHEAD_COLUMNS = (
    Column("vs bare app", lambda r: _times(r.ratio_to_bare)),
    Column("vs twinstack", lambda r: _times(r.ratio_to_twinstack)),
    Column("vs direct", lambda r: _times(r.ratio_to_direct)),
    Column("CPU by process (cores)", _cpu_by, numeric=False),
)
LITTLE_COLUMNS = (
    Column("Little's law req/s", lambda r: n(r.little_rps)),
    Column("steady req/s", lambda r: n(r.steady_rps)),
    Column("ratio", lambda r: f"{r.little_ratio:.2f}"),
    Column("CPU by process (cores)", _cpu_by, numeric=False),
)
PEER_COLUMNS = (
    Column("rank", lambda r: r.rank),
    Column("req/s of each round", lambda r: " / ".join(n(x) for x in r.rounds_rps)),
    Column("configuration", lambda r: ", ".join(f"{k}={v}" for k, v in r.settings.items()), numeric=False),
)


def versus(peer: Run, ours: Run) -> str:
    """How a peer that ranks ahead compares with twinstack's best configuration: a win only
    when every round of the peer beat every round of twinstack's, and by more than the noise."""
    if not ours.throughput_rps:
        return f"{peer.peer} ranks ahead"
    ratio = peer.throughput_rps / ours.throughput_rps
    if peer.rps_low <= ours.rps_high:
        return (
            f"{peer.peer} ranks ahead by {ratio:.2f}x, but its slowest round ({n(peer.rps_low)} req/s) did not beat "
            f"twinstack's fastest ({n(ours.rps_high)}): a tie on this machine"
        )
    if ratio < 1 + NOISE:
        return f"{peer.peer} ranks ahead by {ratio:.2f}x, within {NOISE:.0%}: a tie on this machine"
    return f"{peer.peer} beats twinstack's best configuration here ({ratio:.2f}x the requests per second)"


def peer_sentence(workload: Workload) -> str:
    """What one ranking says: a tie, a peer ahead of twinstack's best, or twinstack first."""
    rows = workload.rows
    ours = [r for r in rows if r.twinstack]
    best_ours = min(r.rank for r in ours) if ours else None
    ahead = [r for r in rows if not r.twinstack and best_ours and r.rank < best_ours]
    top, last = rows[0].throughput_rps, rows[-1].throughput_rps
    if top and last / top >= 1 - NOISE:
        return f"all {len(rows)} servers within {NOISE:.0%} of each other: a tie on this machine"
    if ahead:
        best = next(r for r in rows if r.rank == best_ours)
        return "; ".join(versus(r, best) for r in ahead)
    return "twinstack's configuration ranks first among these servers here"


@dataclass(frozen=True)
class Ranking:
    group: str
    workload: Workload
    sentence: str
    table: Table
    figure: Figure


def rankings(peers: Peers) -> list[Ranking]:
    out = []
    for group, workloads in peers.groups.items():
        for workload in workloads.values():
            rows = workload.rows
            if not rows:
                continue
            bars = chart_bars([f"{r.rank}. {r.peer}" for r in rows], [r.throughput_rps for r in rows],
                              "requests / s", [r.twinstack for r in rows])  # fmt: skip
            out.append(
                Ranking(group, workload, peer_sentence(workload), runs_table(rows, PEER_COLUMNS), figure(bars, "peers"))
            )
    return out


def target_verdict(target: Target) -> str:
    return "not measured" if target.met is None else ("met" if target.met else "not met")


TARGET_BADGE = {"met": BADGE["holds"], "not met": BADGE["does not hold"], "not measured": BADGE["inconclusive"]}


@dataclass(frozen=True)
class PoolView:
    service: str
    table: Table
    figure: Figure | None
    io: Table | None


def pool_view(service: str, pool: OverheadPool) -> PoolView:
    rows = pool.rows
    bars = chart_bars([r.contender for r in rows], [r.throughput_rps for r in rows], "requests / s") if rows else None
    return PoolView(
        service=service,
        table=runs_table(rows, OVERHEAD_COLUMNS),
        figure=figure(bars, "overhead") if bars else None,
        io=runs_table(pool.io, LITTLE_COLUMNS) if pool.io else None,
    )


DBPATH_HEAD = [
    "route", "contender", "CPU µs / req", "each round", "raw driver / this", "PostgreSQL CPU µs / req", "req/s",
    "p99 ms", "errors", "sessions opened", "each round", "CPU by process (cores)",
]  # fmt: skip


@dataclass(frozen=True)
class DbPathView:
    service: str
    pool: DbPathPool
    table: Table


def dbpath_view(service: str, pool: DbPathPool) -> DbPathView:
    """One pool's rows of the database path: every route's contenders, the raw driver's CPU per
    request over each one's beside it."""
    rows = []
    for r in pool.rows:
        settled = () if r.settled else (Note("warn", "(a round started while the server was still busy)"),)
        rows.append([
            Cell(r.route), Cell(r.contender, notes=settled), Cell(n(r.cpu_us_per_request, 0), True),
            Cell(" / ".join(n(x, 0) for x in r.cpu_us_rounds), True), Cell(_times(r.raw_cpu_ratio), True),
            Cell(n(r.postgres_cpu_us_per_request, 0), True), Cell(n(r.throughput_rps), True),
            Cell(n(r.latency_ms.p99, 2), True), Cell(f"{r.errors} / {r.requests}", True),
            Cell(str(r.sessions_opened), True), Cell(" / ".join(map(str, r.sessions_rounds)), True),
            Cell(_cpu_by(r)),
        ])  # fmt: skip
    saturated = [r.label for r in pool.rows if r.generator_saturated]
    return DbPathView(service, pool, Table(head=DBPATH_HEAD, rows=rows, saturated=saturated))


@dataclass(frozen=True)
class ClaimView:
    record: ClaimRecord
    table: Table
    figure: Figure | None
    """Its chart, where this claim is the first to show it."""
    summary: Table | None = None
    """Claim 15: HTTPS as ratios of HTTP, one row per route and kind of connection."""


TLS_SUMMARY_HEAD = [
    "route", "connections", "req/s HTTP", "req/s HTTPS", "req/s HTTPS / HTTP", "p99 ms HTTP", "p99 ms HTTPS",
    "p99 HTTPS / HTTP", "opening a connection ms, HTTP / HTTPS", "nginx CPU ms / req, HTTP / HTTPS",
    "TLS adds (nginx)", "pool CPU ms / req, HTTP / HTTPS", "wrk CPU ms / req, HTTP / HTTPS",
    "TLS handshakes full / resumed", "HTTPS bound by",
]  # fmt: skip


def tls_summary(exp: ClaimRecord) -> Table:
    """Claim 15's ratios: each route and kind of connection, HTTPS beside HTTP (median rounds)."""
    rows = []
    for cell in tls.pair_up(exp.runs).values():

        def med(figure: Callable[[Run], float | None], scheme: str, cell: tls.Case = cell) -> float:
            return cell.median(lambda p: figure(getattr(p, scheme)) or 0.0)

        def both(figure: Callable[[Run], float | None], digits: int = 3) -> str:
            return f"{n(med(figure, 'http'), digits)} / {n(med(figure, 'https'), digits)}"

        full, resumed = cell.handshakes()
        mid = cell.pairs[len(cell.pairs) // 2].https
        connect = both(lambda r: r.connect_ms, 2) if cell.kind != tls.KEPT_ALIVE else "-"
        rows.append([
            Cell(cell.route), Cell(cell.kind), Cell(n(med(lambda r: r.throughput_rps, "http")), True),
            Cell(n(med(lambda r: r.throughput_rps, "https")), True),
            Cell(f"{cell.rps_ratio:.2f}x", True, (Note("muted", f"({cell.outcome()})"),)),
            Cell(n(med(lambda r: r.latency_ms.p99, "http"), 2), True),
            Cell(n(med(lambda r: r.latency_ms.p99, "https"), 2), True), Cell(f"{cell.p99_ratio:.2f}x", True),
            Cell(connect, True), Cell(both(lambda r: r.nginx_cpu_ms_per_request), True),
            Cell(f"+{cell.cost_ms:.3f} ms", True), Cell(both(tls.pool_cpu_ms_per_request), True),
            Cell(both(lambda r: r.generator_cpu_ms_per_request), True),
            Cell(f"{full} / {resumed}", True), Cell(mid.bound_by or "-"),
        ])  # fmt: skip
    runs = [r for cell in tls.pair_up(exp.runs).values() for p in cell.pairs for r in (p.http, p.https)]
    return Table(head=TLS_SUMMARY_HEAD, rows=rows, saturated=[r.label for r in runs if r.generator_saturated])


def claim_views(results: Results) -> list[ClaimView]:
    exps = {e.claim: e for e in results.experiments}
    charts = {
        "io": lambda: chart_curve(results.curves.io, "(I/O-bound)"),
        "cpu": lambda: chart_curve(results.curves.cpu, "(CPU-bound)"),
        "stall": lambda: chart_stall(results.experiments),
        "scaling": lambda: chart_scaling(exps[5]),
        "pool": lambda: chart_pool(exps[12]),
        "tls": lambda: chart_tls(exps[15]),
        "memory": lambda: chart_bars(
            [r.label for r in exps[6].runs], [r.pss_mb_per_request for r in exps[6].runs],
            "PSS MiB per request in flight",
        ),
    }  # fmt: skip
    shown: set[str] = set()
    views = []
    for e in results.experiments:
        fig = None
        if e.chart and e.runs and e.chart not in shown:
            shown.add(e.chart)
            fig = figure(charts[e.chart](), e.chart)
        summary = tls_summary(e) if e.claim == 15 and e.runs else None
        views.append(ClaimView(e, runs_table(e.runs, claim_columns(e.runs)), fig, summary))
    return views


@dataclass(frozen=True)
class CurveView:
    curve: Curve
    figure: Figure
    table: Table


def curve_views(results: Results) -> list[CurveView]:
    views = []
    for kind, unit in (("io", "(I/O-bound)"), ("cpu", "(CPU-bound)")):
        curve = getattr(results.curves, kind)
        if curve is None:
            continue
        runs = [p for s in curve.series.values() for p in s.points]
        views.append(CurveView(curve, figure(chart_curve(curve, unit), kind), runs_table(runs, LIMIT_COLUMNS)))
    return views


def pinning(results: Results) -> str:
    layout = results.cpu_layout
    if layout.pinned:
        return f"servers on CPUs {layout.servers}, load generator on {layout.generator}"
    return "servers and generator share every CPU (too few to pin apart); the generator's CPU is measured"


@cache
def environment() -> jinja2.Environment:
    """bench/templates/, every value escaped unless marked safe, an undefined name an error."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["n"] = n
    return env


def template() -> jinja2.Template:
    return environment().get_template("report.html.j2")


def macros():
    """The page's pieces (badge, table, figure), to render one alone."""
    return environment().get_template("macros.html.j2").module


def render(results: Results) -> str:
    proxy, static = results.proxy, results.static
    return template().render(
        results=results,
        pinning=pinning(results),
        versions=", ".join(f"{k} {v}" for k, v in results.machine.versions.items()),
        colors=BADGE,
        target_colors=TARGET_BADGE,
        target_verdict=target_verdict,
        noise=NOISE,
        claims=claim_views(results),
        curves=curve_views(results),
        overhead_pools=[pool_view(service, pool) for service, pool in results.overhead.pools.items()],
        dbpath_pools=[dbpath_view(service, pool) for service, pool in results.dbpath.pools.items() if pool.rows],
        dbpath_figure=(
            figure(chart_dbpath(results.dbpath), "dbpath")
            if any(pool.rows for pool in results.dbpath.pools.values())
            else None
        ),
        proxy=runs_table(proxy, (Column("vs direct", lambda r: _times(r.ratio_to_direct)),)),
        proxy_figure=figure(_throughput_bars(proxy), "proxy") if proxy else None,
        static=runs_table(static, (Column("vs nginx", lambda r: f"{r.ratio_to_nginx:.2f}x"),)),
        static_figure=figure(_throughput_bars(static), "static") if static else None,
        rankings=rankings(results.peers),
    )


def write_report(results: Results, folder: Path) -> Path:
    page = folder / "index.html"
    page.write_text(render(results))
    return page
