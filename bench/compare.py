"""``make bench-compare A B``: every run both reports share, B's figures as ratios of A's.

results.json is written here and read back through its models (``records.Results``): a file
that does not validate is refused with the first problem found, never half-read."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from pydantic import ValidationError

from .procs import LabError
from .records import SCHEMA_FILE, Results, Run, schema_json


def write(results: Results, folder: Path) -> Path:
    """results.json, and its JSON schema beside it (the file its ``$schema`` names)."""
    (folder / SCHEMA_FILE).write_text(schema_json())
    path = folder / "results.json"
    path.write_text(results.to_json())
    return path


def load(path: Path) -> Results:
    """A report folder's results.json (or that file), read through the models."""
    file = path / "results.json" if path.is_dir() else path
    try:
        return Results.model_validate_json(file.read_bytes())
    except FileNotFoundError:
        raise LabError(f"{file}: no such file (give a report folder or its results.json)") from None
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(map(str, first["loc"])) or "the file"
        raise LabError(
            f"{file}: not a lab results file of this version ({exc.error_count()} problem(s); {where}: {first['msg']})"
        ) from None


def iter_runs(results: Results) -> Iterator[tuple[str, Run]]:
    """Every measured run of a report, keyed by where it sits (section, label, concurrency)."""
    if results.ceiling:
        yield "ceiling", results.ceiling
    for kind in ("io", "cpu"):
        curve = getattr(results.curves, kind)
        for series in curve.series.values() if curve else ():
            for run in series.points:
                yield f"curve {kind}", run
    for experiment in results.experiments:
        for run in experiment.runs:
            yield f"claim {experiment.claim}", run
    for service, pool in results.overhead.pools.items():
        for run in [*pool.rows, *pool.io]:
            yield f"overhead {service}", run
    for service, pool in results.dbpath.pools.items():
        for run in pool.rows:
            yield f"dbpath {service}", run
    for section, runs in (("proxy", results.proxy), ("static", results.static)):
        for run in runs:
            yield section, run
    for group in results.peers.groups.values():
        for workload in group.values():
            for run in workload.rows:
                yield "peers", run


def _ratio(a: float, b: float) -> str:
    return f"{b / a:6.2f}x" if a else "     -"


def compare(a: Results, b: Results) -> str:
    def index(results: Results) -> dict[str, Run]:
        return {f"{section} | {run.label} | c={run.concurrency}": run for section, run in iter_runs(results)}

    runs_a, runs_b = index(a), index(b)

    def about(r: Results) -> str:
        machine = r.machine
        return f"{r.started} ({r.mode.name} mode, {machine.cpu_model}, {machine.usable_cpus} CPUs)"

    lines = [
        f"A: {about(a)}",
        f"B: {about(b)}",
        "",
        f"{'run':<84} {'req/s A':>10} {'req/s B':>10} {'B/A':>7} {'p99 A':>9} {'p99 B':>9} {'B/A':>7}",
    ]
    shared = [key for key in runs_a if key in runs_b]
    for key in shared:
        ra, rb = runs_a[key], runs_b[key]
        pa, pb = ra.latency_ms.p99, rb.latency_ms.p99
        lines.append(
            f"{key[:84]:<84} {ra.throughput_rps:10.1f} {rb.throughput_rps:10.1f} "
            f"{_ratio(ra.throughput_rps, rb.throughput_rps):>7} {pa:9.1f} {pb:9.1f} {_ratio(pa, pb):>7}"
        )
    only = len(runs_a) + len(runs_b) - 2 * len(shared)
    if only:
        lines.append(f"({only} runs appear in one report only: a different mode measures other levels)")
    lines += ["", f"{'claim':<6} {'A':<15} {'B':<15} {'ratio A':>9} {'ratio B':>9}"]
    verdicts_b = {e.claim: e for e in b.experiments}
    for ea in a.experiments:
        eb = verdicts_b.get(ea.claim)
        if eb is None:
            continue
        mark = "" if ea.verdict == eb.verdict else "  <- changed"
        lines.append(f"{ea.claim:<6} {ea.verdict:<15} {eb.verdict:<15} {ea.ratio:9.2f} {eb.ratio:9.2f}{mark}")
    return "\n".join(lines)
