"""``make bench-compare A B``: every run both reports share, B's figures as ratios of A's."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from .procs import LabError


def load(path: Path) -> dict:
    file = path / "results.json" if path.is_dir() else path
    try:
        results = json.loads(file.read_text())
    except FileNotFoundError:
        raise LabError(f"{file}: no such file (give a report folder or its results.json)") from None
    except json.JSONDecodeError as exc:
        raise LabError(f"{file}: not a lab results file ({exc})") from None
    if not isinstance(results, dict) or results.get("schema") != 1:
        raise LabError(f"{file}: not a lab results file (schema 1 expected)")
    return results


def iter_runs(results: dict) -> Iterator[tuple[str, dict]]:
    """Every measured run of a report, keyed by where it sits (section, label, concurrency)."""
    if results.get("ceiling"):
        yield "ceiling", results["ceiling"]
    for kind, curve in results.get("curves", {}).items():
        for series in curve["series"].values():
            for run in series["points"]:
                yield f"curve {kind}", run
    for experiment in results.get("experiments", []):
        for run in experiment["runs"]:
            yield f"claim {experiment['claim']}", run
    for service, pool in results.get("overhead", {}).get("pools", {}).items():
        for run in [*pool["rows"], *pool.get("io", [])]:
            yield f"overhead {service}", run
    for section in ("proxy", "static"):
        for run in results.get(section, []):
            yield section, run
    for group in results.get("peers", {}).get("groups", {}).values():
        for workload in group.values():
            for run in workload["rows"]:
                yield "peers", run


def _ratio(a: float, b: float) -> str:
    return f"{b / a:6.2f}x" if a else "     -"


def compare(a: dict, b: dict) -> str:
    def index(results: dict) -> dict[str, dict]:
        return {f"{section} | {run['label']} | c={run['concurrency']}": run for section, run in iter_runs(results)}

    runs_a, runs_b = index(a), index(b)

    def about(r: dict) -> str:
        machine = r["machine"]
        return f"{r['started']} ({r['mode']['name']} mode, {machine['cpu_model']}, {machine['usable_cpus']} CPUs)"

    lines = [
        f"A: {about(a)}",
        f"B: {about(b)}",
        "",
        f"{'run':<84} {'req/s A':>10} {'req/s B':>10} {'B/A':>7} {'p99 A':>9} {'p99 B':>9} {'B/A':>7}",
    ]
    shared = [key for key in runs_a if key in runs_b]
    for key in shared:
        ra, rb = runs_a[key], runs_b[key]
        pa, pb = ra["latency_ms"]["p99"], rb["latency_ms"]["p99"]
        lines.append(
            f"{key[:84]:<84} {ra['throughput_rps']:10.1f} {rb['throughput_rps']:10.1f} "
            f"{_ratio(ra['throughput_rps'], rb['throughput_rps']):>7} {pa:9.1f} {pb:9.1f} {_ratio(pa, pb):>7}"
        )
    only = len(runs_a) + len(runs_b) - 2 * len(shared)
    if only:
        lines.append(f"({only} runs appear in one report only: a different mode measures other levels)")
    lines += ["", f"{'claim':<6} {'A':<15} {'B':<15} {'ratio A':>9} {'ratio B':>9}"]
    verdicts_b = {e["claim"]: e for e in b.get("experiments", [])}
    for ea in a.get("experiments", []):
        eb = verdicts_b.get(ea["claim"])
        if eb is None:
            continue
        mark = "" if ea["verdict"] == eb["verdict"] else "  <- changed"
        lines.append(
            f"{ea['claim']:<6} {ea['verdict']:<15} {eb['verdict']:<15} {ea['ratio']:9.2f} {eb['ratio']:9.2f}{mark}"
        )
    return "\n".join(lines)
