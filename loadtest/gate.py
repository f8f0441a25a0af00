"""The CI gate: per-profile thresholds checked when Locust quits, a verdict table, the exit code.

Thresholds are options (``--max-fail-ratio``, ``--max-p95-async-ms`` ...) so each profile
sets its own in loadtest/profiles/*.conf. Only the master (or a local runner) judges; in
distributed mode it sees every worker's requests and CPU.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import gevent
import psutil
from locust import events
from locust.env import Environment
from locust.runners import MasterRunner, WorkerRunner
from locust.stats import RequestStats, StatsEntry

# Above this a Locust process cannot keep its users on schedule: latencies it reports include
# its own queueing. Locust warns at the same level.
SATURATED_PCT = 90.0
BACKENDS = {"async": "/async/", "sync": "/sync/", "static": "/"}


@events.init_command_line_parser.add_listener
def add_options(parser: Any) -> None:
    # The profile's name travels in Locust's own --profile option ("group the test runs").
    parser.add_argument("--max-fail-ratio", type=float, default=0.01, help="Largest allowed share of failed requests.")
    for backend in BACKENDS:
        parser.add_argument(
            f"--max-p95-{backend}-ms", type=float, default=0.0, help=f"Largest allowed p95 on {backend} (0: no limit)."
        )
    parser.add_argument("--stages", default="", include_in_web_ui=False, help="Stages for loadtest/shape.py.")
    parser.add_argument("--verdict-json", default="", include_in_web_ui=False, help="Also write the verdict here.")


@dataclass
class Check:
    name: str
    measured: float | None
    limit: float | None
    unit: str
    ok: bool


@dataclass
class Verdict:
    profile: str
    checks: list[Check]
    cpu_peak_pct: dict[str, float]
    notes: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(c.ok for c in self.checks)

    @property
    def saturated(self) -> bool:
        return any(pct > SATURATED_PCT for pct in self.cpu_peak_pct.values())


class CpuMonitor:
    """Peak CPU of every Locust process: this one, and in distributed mode each worker
    (reported in its heartbeats)."""

    def __init__(self, runner: Any) -> None:
        self.runner = runner
        self.peaks: dict[str, float] = {}
        self.process = psutil.Process()
        self.process.cpu_percent()  # the first reading only starts the interval

    def sample(self) -> None:
        label = "master" if isinstance(self.runner, MasterRunner) else "locust"
        self._record(label, self.process.cpu_percent())
        if isinstance(self.runner, MasterRunner):
            for worker_id, node in self.runner.clients.items():
                self._record(f"worker {worker_id.rsplit('_', 1)[-1][:8]}", node.cpu_usage)

    def _record(self, label: str, pct: float) -> None:
        self.peaks[label] = max(self.peaks.get(label, 0.0), float(pct))

    def run(self) -> None:
        while True:
            gevent.sleep(1)
            self.sample()


def backend_of(name: str) -> str:
    for backend, prefix in BACKENDS.items():
        if name.startswith(prefix):
            return backend
    return "static"


def aggregate(stats: RequestStats, backend: str) -> StatsEntry:
    entry = StatsEntry(stats, backend, "")
    for (name, _method), e in stats.entries.items():
        if backend_of(name) == backend:
            entry.extend(e)
    return entry


def evaluate(stats: RequestStats, options: Any, cpu_peaks: dict[str, float]) -> Verdict:
    total = stats.total
    checks = [Check("requests", total.num_requests, None, "", total.num_requests > 0)]
    checks.append(Check("failure ratio", total.fail_ratio * 100, options.max_fail_ratio * 100, "%", True))
    checks[-1].ok = total.num_requests > 0 and total.fail_ratio <= options.max_fail_ratio
    for backend in BACKENDS:
        limit = getattr(options, f"max_p95_{backend}_ms")
        entry = aggregate(stats, backend)
        if not entry.num_requests:
            continue  # not part of this run (tags, user classes)
        p95 = entry.get_response_time_percentile(0.95)
        checks.append(Check(f"p95 {backend}", p95, limit or None, "ms", not limit or p95 <= limit))
    verdict = Verdict(options.profile or "ui", checks, dict(cpu_peaks))
    if verdict.saturated:
        verdict.notes.append("load generator saturated, numbers not trustworthy")
    return verdict


def _fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    return f"{value:.2f}{unit}" if unit == "%" else f"{value:.0f}{unit}"


def render(verdict: Verdict) -> str:
    lines = [
        f"twinstack load-test verdict (profile: {verdict.profile})",
        f"  {'check':<24}{'measured':>12}{'limit':>12}  result",
    ]
    for c in verdict.checks:
        result = "ok" if c.ok else "FAIL"
        lines.append(f"  {c.name:<24}{_fmt(c.measured, c.unit):>12}{_fmt(c.limit, c.unit):>12}  {result}")
    for label, pct in sorted(verdict.cpu_peak_pct.items()):
        flag = "SATURATED" if pct > SATURATED_PCT else "ok"
        lines.append(f"  {'CPU peak ' + label:<24}{pct:>11.0f}%{SATURATED_PCT:>11.0f}%  {flag}")
    lines += [f"  NOTE: {note}" for note in verdict.notes]
    lines.append(f"  VERDICT: {'PASS' if verdict.passed else 'FAIL'}")
    return "\n".join(lines)


_monitor: CpuMonitor | None = None


@events.init.add_listener
def start_cpu_monitor(environment: Environment, **_: Any) -> None:
    global _monitor
    if isinstance(environment.runner, WorkerRunner):
        return
    _monitor = CpuMonitor(environment.runner)
    gevent.spawn(_monitor.run)


@events.quitting.add_listener
def apply_gate(environment: Environment, **_: Any) -> None:
    if isinstance(environment.runner, WorkerRunner) or environment.parsed_options is None:
        return
    if _monitor is not None:
        _monitor.sample()
    verdict = evaluate(environment.stats, environment.parsed_options, _monitor.peaks if _monitor else {})
    print(render(verdict), flush=True)
    if environment.parsed_options.verdict_json:
        path = Path(environment.parsed_options.verdict_json)
        path.parent.mkdir(parents=True, exist_ok=True)
        payload = {**asdict(verdict), "passed": verdict.passed, "saturated": verdict.saturated}
        path.write_text(json.dumps(payload, indent=2))
    # Set either way: the gate, not Locust's "any failure" default, decides the exit code.
    environment.process_exit_code = 0 if verdict.passed else 1
