"""The lab's report: one self-contained index.html (charts as inline SVG, no external file or
script), verdict table first, from the results.json it sits beside."""

from __future__ import annotations

import html
import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.ticker import FuncFormatter, NullFormatter

plt.rcParams.update({"svg.fonttype": "none", "font.size": 9, "axes.grid": True, "grid.alpha": 0.3})
COLORS = {"async": "#1f77b4", "sync": "#d62728", "gthread": "#ff7f0e", "gevent": "#2ca02c"}
# Differences smaller than this between two runs are within a shared machine's run-to-run noise.
NOISE = 0.05
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
    "memory": "Memory (PSS: shared pages split between the processes sharing them) per request in flight, holding "
    "the same number of concurrent requests three ways: the whole server's peak divided by the requests it held. "
    "The table beside it also gives what the requests added to the idle server.",
    "proxy": "Requests per second of GET /health, direct to each pool and through nginx with and without upstream "
    "keep-alive, and through twinstack's own nginx configuration (JSON access log, limits, headers).",
    "static": "Requests per second for the same CSS file from nginx and from Python workers.",
    "overhead": "Requests per second of GET /health (median round) for each contender on the same gunicorn "
    "configuration: the bare app, twinstack's app, twinstack's app with one piece of instrumentation off at a time, "
    "and both through nginx. The gap between a row and 'twinstack' is what that piece costs.",
    "peers": "Requests per second (median round) of each server on the same app and workload, best first; twinstack's "
    "configurations are the darker bars.",
}


def _svg(fig) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight")
    plt.close(fig)
    text = buf.getvalue()
    return text[text.index("<svg") :]


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


def chart_curve(curve: dict, unit: str) -> str:
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
    for name, series in curve["series"].items():
        points = series["points"]
        xs = [p["concurrency"] for p in points]
        color = COLORS.get(name)
        left.plot(xs, [max(p["throughput_rps"], 0.1) for p in points], "o-", color=color, label=name)
        left.plot(xs, [max(p["limits"]["bound_rps"], 0.1) for p in points], "--", color=color, alpha=0.6)
        p99 = [max(p["latency_ms"]["p99"], 0.01) for p in points]
        right.plot(xs, p99, "o-", color=color, label=name)
        censored = [(x, y) for x, y, p in zip(xs, p99, points, strict=True) if p.get("latency_censored")]
        if censored:
            right.plot(*zip(*censored, strict=True), "o", color=color, markerfacecolor="white", zorder=3)
    for ax in (left, right):
        _log_axes(ax, curve["levels"])
        ax.set_xlabel("concurrency (requests in flight)")
    left.set_ylabel("requests / s (dashed: limit)")
    right.set_ylabel("p99 latency (ms)")
    left.set_title(f"{curve['path']}: throughput {unit}")
    right.set_title(f"{curve['path']}: p99")
    left.legend(fontsize=8)
    return _svg(fig)


def chart_stall(experiments: list[dict]) -> str:
    stall = [e for e in experiments if e["claim"] in (3, 9)]
    fig, axes = plt.subplots(1, len(stall), figsize=(10, 3.2), squeeze=False)
    for ax, exp in zip(axes[0], stall, strict=True):
        labels = [r["beside"] for r in exp["runs"]]
        values = [r["latency_ms"]["p99"] for r in exp["runs"]]
        ax.bar(range(len(values)), values, color=["#888888", "#cf222e", "#1a7f37"][: len(values)])
        ax.set_xticks(range(len(values)), [label.replace(" (", "\n(") for label in labels], fontsize=7)
        ax.set_ylabel("p99 of 20 ms waits (ms)")
        ax.set_title(f"claim {exp['claim']}")
    return _svg(fig)


def chart_scaling(exp: dict) -> str:
    fig, ax = plt.subplots(figsize=(6, 3.4))
    for family, color in (("sync workers", COLORS["sync"]), ("gthread threads", COLORS["gthread"])):
        runs = [r for r in exp["runs"] if r["family"] == family]
        xs = [r["slots"] for r in runs]
        ax.plot(xs, [r["throughput_rps"] for r in runs], "o-", color=color, label=family)
        ax.plot(xs, [r["limits"]["little_rps"] for r in runs], "--", color=color, alpha=0.6)
    _log_axes(ax, sorted({r["slots"] for r in exp["runs"]}), logy=False)
    ax.set_xlabel("slots (workers, or threads of one worker)")
    ax.set_ylabel("requests / s (dashed: slots / latency)")
    ax.legend(fontsize=8)
    return _svg(fig)


def chart_bars(labels: list[str], values: list[float], xlabel: str, dark: list[bool] | None = None) -> str:
    fig, ax = plt.subplots(figsize=(8, 0.35 * len(labels) + 0.8))
    colors = ["#1f4e79" if d else "#8fb3d9" for d in (dark or [True] * len(labels))]
    ax.barh(range(len(values)), values, color=colors)
    ax.set_yticks(range(len(values)), labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel(xlabel)
    return _svg(fig)


# --- HTML ------------------------------------------------------------------------------------
CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:2rem auto;max-width:1150px;padding:0 1rem;color:#1f2328}
h1{margin-bottom:.2rem} h2{margin-top:2.2rem;border-bottom:1px solid #d0d7de;padding-bottom:.3rem}
table{border-collapse:collapse;margin:.6rem 0;font-size:12.5px;width:100%}
th,td{border:1px solid #d0d7de;padding:3px 6px;text-align:left;vertical-align:top}
th{background:#f6f8fa} td.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.badge{color:#fff;border-radius:4px;padding:1px 6px;white-space:nowrap;font-weight:600}
.muted{color:#656d76} .warn{color:#9a6700;font-weight:600} figure{margin:.8rem 0}
figcaption{color:#656d76;font-size:12.5px;max-width:900px} svg{max-width:100%;height:auto}
tr.ceiling td{background:#f6f8fa;font-weight:600} .scroll{overflow-x:auto}
"""


def _e(text: object) -> str:
    return html.escape(str(text))


def _n(value: float, digits: int = 1) -> str:
    return f"{value:,.{digits}f}"


def _badge(verdict: str) -> str:
    return f'<span class="badge" style="background:{BADGE[verdict]}">{_e(verdict)}</span>'


def _figure(svg: str, key: str) -> str:
    return f"<figure>{svg}<figcaption>{_e(CAPTIONS[key])}</figcaption></figure>"


def runs_table(runs: list[dict], extra: tuple[tuple[str, str], ...] = ()) -> str:
    head = (
        "<tr><th>run</th><th>tool</th><th>conc.</th><th>s</th><th>req/s</th><th>p50 ms</th><th>p95 ms</th>"
        "<th>p99 ms</th><th>errors</th><th>server CPU (cores)</th><th>CPU ms / req</th><th>RSS MiB</th><th>PSS MiB</th>"
        "<th>generator CPU (cores)</th>" + "".join(f"<th>{_e(h)}</th>" for h, *_ in extra) + "</tr>"
    )
    rows = []
    for r in runs:
        lat = r["latency_ms"]
        saturated = ' <span class="warn">saturated</span>' if r["generator_saturated"] else ""
        flags = "".join(
            f' <span class="{cls}">({_e(text)})</span>'
            for cls, text, on in (
                ("warn", "started while the server was still busy", not r.get("settled", True)),
                ("muted", "p99 censored: requests outlasted a third of the run", r.get("latency_censored")),
                ("muted", _background(r), "background" in r),
            )
            if on
        )
        gen = _n(r["generator_cpu_cores"], 2) + saturated
        box = ' <span class="muted">(box CPU-bound)</span>' if r["box_saturated"] else ""
        cells = [
            f"<td>{_e(r['label'])}{flags}</td><td>{_e(r['tool'])}</td><td class=n>{r['concurrency']}</td>",
            f"<td class=n>{_n(r.get('duration_s', 0.0))}</td>",
            f"<td class=n>{_n(r['throughput_rps'])}</td><td class=n>{_n(lat['p50'])}</td>",
            f"<td class=n>{_n(lat['p95'])}</td><td class=n>{_n(lat['p99'])}</td>",
            f"<td class=n>{r['errors']} / {r['requests']}</td><td class=n>{_n(r['server_cpu_cores'], 2)}{box}</td>",
            f"<td class=n>{_n(r['cpu_ms_per_request'], 2)}</td><td class=n>{_n(r['server_rss_mb'])}</td>",
            f"<td class=n>{_n(r['server_pss_mb'])}</td><td class=n>{gen}</td>",
            *(f"<td{' class=n' if numeric else ''}>{_e(fmt(r))}</td>" for _, fmt, numeric in extra),
        ]
        rows.append("<tr>" + "".join(cells) + "</tr>")
    saturated = [r["label"] for r in runs if r["generator_saturated"]]
    note = (
        f"<p class=warn>The load generator saturated its CPU in {_e(', '.join(saturated))}: there it, not the "
        "server, set the pace, so that throughput is a lower bound of what the server can do.</p>"
        if saturated
        else ""
    )
    return f"<div class=scroll><table>{head}{''.join(rows)}</table></div>{note}"


def _background(run: dict) -> str:
    side = run.get("background", {})
    return f"beside it: {side.get('requests', 0)} interfering requests, {side.get('errors', 0)} errors"


def _limit_cols() -> tuple[tuple[str, object, bool], ...]:
    def col(fmt):
        return lambda r: fmt(r["limits"]) if "limits" in r else "-"

    return (
        ("limit req/s", col(lambda lim: _n(lim["bound_rps"])), True),
        ("limit", col(lambda lim: lim["binding"]), False),
        ("ratio", col(lambda lim: f"{lim['ratio']:.2f}"), True),
        ("CPU busy", col(lambda lim: f"{lim.get('utilisation', 0):.0%}"), True),
        ("CPU / req vs best", col(lambda lim: f"{lim.get('cpu_cost_rise', 0):.2f}x"), True),
    )


def _extra_cols(runs: list[dict]) -> tuple[tuple[str, object, bool], ...]:
    """The columns a claim's own figures need, beside every run's."""
    cols: tuple = _limit_cols() if any("limits" in r for r in runs) else ()
    if any("held_concurrency" in r for r in runs):
        cols += (("held at once", lambda r: r.get("held_concurrency", "-"), True),)
    if any("pss_mb_per_request" in r for r in runs):
        cols += (
            ("PSS MiB / request", lambda r: _n(r["pss_mb_per_request"], 2), True),
            ("added KiB / request", lambda r: _n(r["pss_mb_added_per_request"] * 1024, 0), True),
        )
    if any("finished_after_response" in r for r in runs):
        cols += (("jobs done after their 202", lambda r: f"{r['finished_after_response']} / {r['requests']}", True),)
    return cols


def summary_table(results: dict) -> str:
    c = results["ceiling"]
    if not c:
        rows = [
            '<tr class="ceiling"><td>0</td><td>The box\'s ceiling: wrk against nginx <code>return 200</code>.</td>'
            "<td>not measured</td><td class=n>-</td><td class=n>-</td><td>-</td><td>see the failures below</td></tr>"
        ]
    else:
        rows = [
            '<tr class="ceiling"><td>0</td><td>The box\'s ceiling: wrk against nginx <code>return 200</code>, no app. '
            "Every figure below sits under it.</td>"
            f"<td>{_n(c['throughput_rps'])} req/s</td><td class=n>-</td><td class=n>-</td><td>measured</td>"
            f"<td>p99 {_n(c['latency_ms']['p99'], 2)} ms at c={c['concurrency']}; generator "
            f"{_n(c['generator_cpu_cores'], 2)} cores"
            f"{' (saturated: the generator is the limit here)' if c['generator_saturated'] else ''}</td></tr>"
        ]
    for e in results["experiments"]:
        y, m = e["yardstick"], e["measured"]
        rows.append(
            f"<tr><td><a href='#claim-{e['claim']}'>{e['claim']}</a></td><td>{_e(e['text'])}</td>"
            f"<td>{_e(m['name'])}: {_n(m['value'])} {_e(m['unit'])}</td>"
            f"<td>{_e(y['name'])} ({_e(y['formula'])}): {_n(y['value'])} {_e(y['unit'])}</td>"
            f"<td class=n>{e['ratio']:.2f}</td><td>{_badge(e['verdict'])}</td><td>{_e(e['reason'])}</td></tr>"
        )
    head = "".join(f"<th>{h}</th>" for h in ("#", "claim", "measured", "yardstick", "ratio", "verdict", "why"))
    head = f"<tr>{head}</tr>"
    return f"<table>{head}{''.join(rows)}</table>"


def _overhead_summary(overhead: dict) -> str:
    targets = overhead.get("targets", [])
    if not targets:
        return ""
    met = sum(1 for t in targets if t["met"])
    return f"<p>Overhead targets: {met} of {len(targets)} met (<a href='#overhead'>the figures</a>).</p>"


def machine_block(results: dict) -> str:
    m = results["machine"]
    versions = ", ".join(f"{k} {v}" for k, v in m["versions"].items())
    layout = results["cpu_layout"]
    pinning = (
        f"servers on CPUs {layout['servers']}, load generator on {layout['generator']}"
        if layout["pinned"]
        else "servers and generator share every CPU (too few to pin apart); the generator's CPU is measured"
    )
    mode = results["mode"]
    return (
        f"<p><b>{_e(m['cpu_model'])}</b>, {m['usable_cpus']} usable CPUs of {m['cpus']}, {m['memory_gib']} GiB, "
        f"{_e(m['os'])} (kernel {_e(m['kernel'])}). {_e(pinning)}.</p>"
        f"<p class=muted>Versions: {_e(versions)}.</p>"
        f"<p class=muted>Mode <b>{_e(mode['name'])}</b>: {mode['duration_s']} s per point, started "
        f"{_e(results['started'])}, took {results['elapsed_s']:.0f} s.</p>"
    )


def _versus(peer: dict, ours: dict) -> str:
    """How a peer that ranks ahead compares with twinstack's best configuration: a win only
    when every round of the peer beat every round of twinstack's, and by more than the noise."""
    if not ours["throughput_rps"]:
        return f"{peer['peer']} ranks ahead"
    ratio = peer["throughput_rps"] / ours["throughput_rps"]
    peer_low = peer.get("rps_low", peer["throughput_rps"])
    ours_high = ours.get("rps_high", ours["throughput_rps"])
    if peer_low <= ours_high:
        return (
            f"{peer['peer']} ranks ahead by {ratio:.2f}x, but its slowest round ({_n(peer_low)} req/s) did not beat "
            f"twinstack's fastest ({_n(ours_high)}): a tie on this machine"
        )
    if ratio < 1 + NOISE:
        return f"{peer['peer']} ranks ahead by {ratio:.2f}x, within {NOISE:.0%}: a tie on this machine"
    return f"{peer['peer']} beats twinstack's best configuration here ({ratio:.2f}x the requests per second)"


def peers_block(peers: dict) -> str:
    parts = []
    for group, workloads in peers["groups"].items():
        for workload in workloads.values():
            rows = workload["rows"]
            ours = [r for r in rows if r["twinstack"]]
            best_ours = min(r["rank"] for r in ours) if ours else None
            ahead = [r for r in rows if not r["twinstack"] and best_ours and r["rank"] < best_ours]
            top, last = rows[0]["throughput_rps"], rows[-1]["throughput_rps"]
            if top and last / top >= 1 - NOISE:
                sentence = f"all {len(rows)} servers within {NOISE:.0%} of each other: a tie on this machine"
            elif ahead:
                best = next(r for r in rows if r["rank"] == best_ours)
                sentence = "; ".join(_versus(r, best) for r in ahead)
            else:
                sentence = "twinstack's configuration ranks first among these servers here"
            parts.append(
                f"<h3>{_e(group)}: GET {_e(workload['path'])}, {workload['concurrency']} in flight</h3>"
                f"<p>{_e(sentence)}.</p>"
                + runs_table(
                    rows,
                    (
                        ("rank", lambda r: r["rank"], True),
                        ("req/s of each round", lambda r: " / ".join(_n(x) for x in r.get("rounds_rps", [])), True),
                        ("configuration", lambda r: ", ".join(f"{k}={v}" for k, v in r["settings"].items()), False),
                    ),
                )
                + _figure(
                    chart_bars(
                        [f"{r['rank']}. {r['peer']}" for r in rows],
                        [r["throughput_rps"] for r in rows],
                        "requests / s",
                        [r["twinstack"] for r in rows],
                    ),
                    "peers",
                )
            )
    return "".join(parts)


def overhead_block(overhead: dict) -> str:
    """The targets first (measured ratio, target, met or not, what bound the run), then each
    pool's contenders and the waits against Little's law."""
    if not overhead.get("targets"):
        return "<p class=warn>Not measured in this run (see the failures above).</p>"
    met = [t for t in overhead["targets"] if t["met"]]
    rows = []
    for t in overhead["targets"]:
        verdict = "not measured" if t["met"] is None else ("met" if t["met"] else "not met")
        color = {"met": BADGE["holds"], "not met": BADGE["does not hold"]}.get(verdict, BADGE["inconclusive"])
        measured = "-" if t["measured"] is None else f"{t['measured']:.2f}"
        rows.append(
            f"<tr><td>{_e(t['what'])}</td><td class=n>{measured}</td><td class=n>&ge; {t['target']:.2f}</td>"
            f'<td><span class="badge" style="background:{color}">{verdict}</span></td>'
            f"<td>{_e(t.get('figures', ''))}</td><td>{_e(t['binds'])}</td></tr>"
        )
    head = "".join(f"<th>{h}</th>" for h in ("ratio", "measured", "target", "", "figures", "what bound the run"))
    parts = [
        f"<p>{len(met)} of {len(overhead['targets'])} targets met. Each contender ran {overhead['rounds']} rounds of "
        f"{overhead['duration_s']} s at c={overhead['concurrency']}, interleaved; its row is its median round. "
        "Every ratio is of two figures from this run.</p>",
        f"<table><tr>{head}</tr>{''.join(rows)}</table>",
    ]
    ratio_cols = (
        ("vs bare app", lambda r: f"{r['ratio_to_bare']:.2f}x" if r.get("ratio_to_bare") else "-", True),
        ("vs twinstack", lambda r: f"{r['ratio_to_twinstack']:.2f}x" if r.get("ratio_to_twinstack") else "-", True),
        ("vs direct", lambda r: f"{r['ratio_to_direct']:.2f}x" if r.get("ratio_to_direct") else "-", True),
        ("CPU by process (cores)", lambda r: _cpu_by(r), False),
    )
    for service, pool in overhead.get("pools", {}).items():
        parts.append(f"<h3>{_e(service)} pool: GET /health</h3>")
        parts.append(runs_table(pool["rows"], ratio_cols))
        if pool["rows"]:
            bars = chart_bars([r["contender"] for r in pool["rows"]], [r["throughput_rps"] for r in pool["rows"]],
                              "requests / s")  # fmt: skip
            parts.append(_figure(bars, "overhead"))
        if pool.get("io"):
            parts.append(
                "<h3>Waits through nginx against Little's law</h3><p>Judged on the steady throughput, concurrency / "
                "mean latency: wrk stops mid-wait, so its count misses up to one round of waits per connection (both "
                "are shown). The judged runs spread each connection's first request over one wait, as independent "
                "clients arrive; started all at once (wrk's default, the last row), requests of equal waits stay in "
                "lockstep for the whole run and each worker meets its share of them in one burst per wait.</p>"
            )
            parts.append(
                runs_table(
                    pool["io"],
                    (
                        ("Little's law req/s", lambda r: _n(r["little_rps"]), True),
                        ("steady req/s", lambda r: _n(r["steady_rps"]), True),
                        ("ratio", lambda r: f"{r['little_ratio']:.2f}", True),
                        ("CPU by process (cores)", lambda r: _cpu_by(r), False),
                    ),
                )
            )
    return "".join(parts)


def _cpu_by(run: dict) -> str:
    by = sorted(run.get("server_cpu_cores_by", {}).items(), key=lambda kv: kv[1], reverse=True)
    return ", ".join(f"{name} {cores:.2f}" for name, cores in by)


def _throughput_bars(runs: list[dict]) -> str:
    return chart_bars([r["label"] for r in runs], [r["throughput_rps"] for r in runs], "requests / s")


def render(results: dict) -> str:
    curves = results["curves"]
    exps = {e["claim"]: e for e in results["experiments"]}
    charts = {
        "io": lambda: chart_curve(curves["io"], "(I/O-bound)"),
        "cpu": lambda: chart_curve(curves["cpu"], "(CPU-bound)"),
        "stall": lambda: chart_stall([e for e in results["experiments"] if e["runs"]]),
        "scaling": lambda: chart_scaling(exps[5]),
        "memory": lambda: chart_bars(
            [r["label"] for r in exps[6]["runs"]],
            [r["pss_mb_per_request"] for r in exps[6]["runs"]],
            "PSS MiB per request in flight",
        ),
    }
    failures = results.get("failures", [])
    body = [
        "<h1>twinstack lab report</h1>",
        machine_block(results),
        "<h2>Verdicts</h2>",
        summary_table(results),
        _overhead_summary(results.get("overhead", {})),
        "<ul>" + "".join(f"<li class=muted>{_e(n)}</li>" for n in results["notes"]) + "</ul>",
    ]
    if failures:
        body.append(
            "<p class=warn>Parts of this run could not be measured (their tracebacks are in logs/lab-errors.log):</p>"
            "<ul>" + "".join(f"<li class=warn>{_e(f)}</li>" for f in failures) + "</ul>"
        )
    shown: set[str] = set()
    for e in results["experiments"]:
        body.append(
            f"<h2 id='claim-{e['claim']}'>Claim {e['claim']}: {_e(e['text'])} {_badge(e['verdict'])}</h2>"
            f"<p><b>What ran:</b> {_e(e['what'])}.</p>"
            f"<p><b>Yardstick:</b> {_e(e['yardstick']['name'])} = {_e(e['yardstick']['formula'])} = "
            f"{_n(e['yardstick']['value'])} {_e(e['yardstick']['unit'])}. <b>Measured:</b> "
            f"{_e(e['measured']['name'])} = {_n(e['measured']['value'])} {_e(e['measured']['unit'])}. "
            f"<b>Ratio:</b> {e['ratio']:.2f} (band: {_e(e['band'])}).</p>"
            f"<p><b>Verdict:</b> {_e(e['verdict'])}: {_e(e['reason'])}.</p>"
            + runs_table(e["runs"], _extra_cols(e["runs"]))
        )
        if e["chart"] and e["runs"] and e["chart"] not in shown:
            shown.add(e["chart"])
            body.append(_figure(charts[e["chart"]](), e["chart"]))
    body.append("<h2>Curves: every configuration, every concurrency</h2>")
    for kind in ("io", "cpu"):
        body.append(f"<h3>{_e(curves[kind]['path'])}</h3>")
        body.append(_figure(charts[kind](), kind))
        runs = [p for s in curves[kind]["series"].values() for p in s["points"]]
        body.append(runs_table(runs, _limit_cols()))
    body.append("<h2 id='overhead'>Overhead: what twinstack's own layers cost per request</h2>")
    body.append(overhead_block(results.get("overhead", {})))
    body.append("<h2>nginx in front: proxy cost and upstream keep-alive</h2>")
    proxy = results["proxy"]
    vs_direct = ("vs direct", lambda r: f"{r['ratio_to_direct']:.2f}x" if r["ratio_to_direct"] else "-", True)
    body.append(runs_table(proxy, (vs_direct,)))
    if proxy:
        body.append(_figure(_throughput_bars(proxy), "proxy"))
    body.append("<h2>Static files: nginx vs a Python worker, the same bytes</h2>")
    static = results["static"]
    body.append(runs_table(static, (("vs nginx", lambda r: f"{r['ratio_to_nginx']:.2f}x", True),)))
    if static:
        body.append(_figure(_throughput_bars(static), "static"))
    body.append("<h2>Peers: what users would pick instead, same apps, same run</h2>")
    peers = results["peers"]
    if "rounds" in peers:
        body.append(
            f"<p>Each server ran {peers['rounds']} rounds of {peers['duration_s']} s on each workload, interleaved "
            "(each round in a different order); its row is its median round. A peer beats twinstack only when "
            f"all its rounds beat all of twinstack's and by more than {NOISE:.0%}.</p>"
        )
    body.append(peers_block(peers))
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8><title>twinstack lab report</title>"
        f"<meta name=viewport content='width=device-width, initial-scale=1'><style>{CSS}</style></head><body>"
        + "\n".join(body)
        + "</body></html>"
    )


def write_report(results: dict, folder: Path) -> Path:
    page = folder / "index.html"
    page.write_text(render(results))
    return page
