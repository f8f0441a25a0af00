"""The lab's experiments, registered as data, and the one view of the lab they are handed.

An experiment is an ``Experiment``: an id, a title, the function that runs it, the claims it
decides (none: it fills the section of results.json its id names, a field of
``records.Results``), the experiments whose results it takes (``needs``: handed to the
function after the context, in order) or that must merely run before it (``after``: the
servers one leaves behind or stops), and its phase. Each module that defines experiments
registers them where they are written::

    @experiment("claim-7", "sync workers on CPU-bound work", claims=(7,), needs=("curves",))
    def claim_7(lab: Context, curves: Curves) -> ClaimRecord: ...

``load()`` imports those modules and returns the experiments in run order: by phase, then by
the first claim each decides, then by id, every experiment after what it needs. The function
is handed a ``Context``: what an experiment may use of the lab (``bench.lab.Lab`` is the one
implementation; the tests hand in stand-ins). No experiment imports bench.lab.
"""

from __future__ import annotations

import heapq
import importlib
import pkgutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path
from typing import Any, Protocol

from pydantic import TypeAdapter

from .database import LabDatabase
from .load import Generator
from .modes import Mode
from .procs import LabError, Server, Servers
from .records import ClaimRecord, Limits, Results, Run, Settings
from .verdicts import unmeasured

# The modules that register experiments besides bench.claims (every module of which does).
PROVIDERS = ("bench.curves", "bench.dbpath", "bench.edge", "bench.overhead", "bench.peers")


class Phase(IntEnum):
    BASELINE = 0  # the box's ceiling, and the curves the claims read
    CLAIMS = 1
    EDGE = 2  # around the pools: their overhead, nginx in front, static files, the peers


@dataclass(frozen=True)
class Stack:
    """The deployment the lab starts before any experiment runs, on free loopback ports."""

    downstream: Server
    async_pool: Server
    sync_pool: Server
    nginx: Server
    """twinstack's nginx configuration, and the lab's own servers beside it
    (bench/nginx-bench.conf.template)."""
    url: str
    """twinstack's nginx: http://127.0.0.1:PORT."""
    ceiling_url: str
    """The lab's nginx server that answers ``return 200``: the box's ceiling."""
    proxy_url: str
    """The lab's nginx server in front of the pools with and without upstream keep-alive
    (/keepalive/<pool>/, /close/<pool>/), and the landing page's static files."""
    curves: Mapping[str, Server]
    """One server per serving model the curves compare: async, sync, gthread, gevent (the
    async and sync pools are the stack's own)."""


class Context(Protocol):
    """What an experiment may use of the lab."""

    mode: Mode
    cores: int
    """The CPUs the servers may use."""
    gen: Generator
    servers: Servers
    """Starts and stops the servers an experiment makes (``pool``, ``peer``, ``render_nginx``)."""
    stack: Stack
    database: LabDatabase
    """The lab's PostgreSQL, running and migrated, which every pool connects to."""
    scratch: Path
    """The lab's temporary folder (control sockets); removed when the run ends."""

    def section(self, title: str) -> None:
        """Say what runs next (the progress shown while the lab runs)."""

    def failed(self, what: str, exc: BaseException) -> str:
        """Record a part of the run that could not be measured; the run goes on."""

    def limits(
        self, run: Run, settings: Settings, concurrency: int, wait_s: float, cpu_ms_ref: float | None = None
    ) -> Limits:
        """The physical limits of one run on this machine (``verdicts.physical_limits``)."""

    def pool(
        self,
        name: str,
        service: str,
        workers: int | None = None,
        worker_class: str = "sync",
        threads: int = 1,
        port: int | None = None,
        *,
        log_level: str = "warning",
        app: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> Server:
        """A twinstack pool (``service``: async or sync) on its own gunicorn.conf.py, not started."""

    def peer(self, name: str, argv: list[str], settings: Settings, port: int, health: str = "/health") -> Server:
        """Another server, run with the stack's environment, not started."""

    def async_one(self) -> Server:
        """The one-worker async server, started (it stays up for the next claim that asks)."""

    def render_nginx(self, name: str, template: str | None, port: int, env: Mapping[str, str]) -> Server:
        """An nginx of its own: twinstack's configuration rendered from the stack's environment
        with ``env`` over it, and ``template`` (a file of bench/, if any) beside it; not started."""


class RegistryError(RuntimeError):
    pass


@dataclass(frozen=True)
class Experiment:
    id: str
    title: str
    run: Callable[..., Any]
    claims: tuple[int, ...] = ()
    needs: tuple[str, ...] = ()
    after: tuple[str, ...] = ()
    phase: Phase = Phase.CLAIMS

    @property
    def what(self) -> str:
        """How a failure names it: its claims, or its section."""
        return f"claim {'/'.join(map(str, self.claims))}" if self.claims else self.id

    def execute(self, lab: Context, done: Mapping[str, Any]) -> Any:
        """Run it with the results it needs. It returns its claims' records, or its section's
        value; if it raises (or returns something else), the failure is recorded, its claims
        are inconclusive with the error as the reason, and its section is the section's default."""
        try:
            out = self.run(lab, *(done[name] for name in self.needs))
            if not self.claims:
                return _section_type(self.id).validate_python(out)
            records = _RECORDS.validate_python(out if isinstance(out, list) else [out])
            if sorted(r.claim for r in records) != sorted(self.claims):
                raise LabError(f"returned the records of claims {[r.claim for r in records]}, not {self.claims}")
            return records
        except Exception as exc:  # recorded in the report; the run goes on (a ValidationError too)
            reason = lab.failed(self.what, exc)
            if self.claims:
                return [unmeasured(claim, reason) for claim in self.claims]
            return section_default(self.id)


_RECORDS = TypeAdapter(list[ClaimRecord])


def _section_type(name: str) -> TypeAdapter:
    return TypeAdapter(Results.model_fields[name].annotation)


def section_default(name: str) -> Any:
    """What a section of results.json is when its experiment could not run."""
    return Results.model_fields[name].get_default(call_default_factory=True)


class Registry:
    def __init__(self) -> None:
        self._experiments: dict[str, Experiment] = {}

    def add(self, experiment: Experiment) -> Experiment:
        if experiment.id in self._experiments:
            raise RegistryError(f"experiment {experiment.id!r} is registered twice")
        if not experiment.claims and experiment.id not in Results.model_fields:
            raise RegistryError(f"experiment {experiment.id!r} decides no claim and names no section of results.json")
        self._experiments[experiment.id] = experiment
        return experiment

    def experiment(
        self,
        id: str,
        title: str,
        *,
        claims: tuple[int, ...] = (),
        needs: tuple[str, ...] = (),
        after: tuple[str, ...] = (),
        phase: Phase = Phase.CLAIMS,
    ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Register the function it decorates (which stays as it is, to call or test)."""

        def register(run: Callable[..., Any]) -> Callable[..., Any]:
            self.add(Experiment(id, title, run, claims, needs, after, phase))
            return run

        return register

    def ordered(self) -> list[Experiment]:
        """Every experiment after those it needs; otherwise by phase, first claim, id."""
        experiments = self._experiments
        for exp in experiments.values():
            for name in (*exp.needs, *exp.after):
                if name not in experiments:
                    raise RegistryError(f"{exp.id} depends on {name!r}, which is not registered")
            for name in exp.needs:
                if experiments[name].claims:
                    raise RegistryError(f"{exp.id} needs {name!r}, which fills no section to hand it")
        waiting = {exp.id: set(exp.needs) | set(exp.after) for exp in experiments.values()}
        ready = [_key(exp) for exp in experiments.values() if not waiting[exp.id]]
        heapq.heapify(ready)
        order: list[Experiment] = []
        while ready:
            exp = experiments[heapq.heappop(ready)[-1]]
            order.append(exp)
            for other, deps in waiting.items():
                if exp.id in deps:
                    deps.remove(exp.id)
                    if not deps:
                        heapq.heappush(ready, _key(experiments[other]))
        if len(order) != len(experiments):
            stuck = sorted(set(experiments) - {exp.id for exp in order})
            raise RegistryError(f"experiments that depend on each other: {', '.join(stuck)}")
        return order

    def claims(self) -> list[int]:
        return sorted(claim for exp in self._experiments.values() for claim in exp.claims)


def _key(exp: Experiment) -> tuple[int, int, str]:
    return (exp.phase, min(exp.claims, default=0), exp.id)


REGISTRY = Registry()
experiment = REGISTRY.experiment


def select(order: Sequence[Experiment], only: Sequence[str]) -> list[Experiment]:
    """The experiments ``only`` names (all of them when it names none) and those they need (whose
    sections they are handed), in ``order``; ``after`` orders them but does not add them."""
    if not only:
        return list(order)
    by = {exp.id: exp for exp in order}
    unknown = [name for name in only if name not in by]
    if unknown:
        raise RegistryError(f"no experiment {', '.join(map(repr, unknown))}: `python -m bench list` names them")
    wanted: set[str] = set()
    todo = list(only)
    while todo:
        name = todo.pop()
        if name not in wanted:
            wanted.add(name)
            todo += by[name].needs
    return [exp for exp in order if exp.id in wanted]


def load(providers: Sequence[str] = PROVIDERS) -> list[Experiment]:
    """Import every module that registers experiments; the experiments in run order."""
    from . import claims

    for module in pkgutil.iter_modules(claims.__path__, f"{claims.__name__}."):
        importlib.import_module(module.name)
    for name in providers:
        importlib.import_module(name)
    return REGISTRY.ordered()
