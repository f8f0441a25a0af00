"""Stand-ins the lab's unit tests share: records with every figure a model requires, and a
``registry.Context`` that hands an experiment canned runs instead of starting servers."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

from bench.modes import MODES
from bench.procs import LabError
from bench.records import CpuLayoutRecord, Latency, Machine, Results, Run
from bench.verdicts import physical_limits

ASYNC = {"server": "gunicorn", "worker_class": "uvicorn_worker.UvicornWorker", "workers": 2}
SYNC = {"server": "gunicorn", "worker_class": "sync", "workers": 5, "threads": 1}


def run(throughput: float = 100.0, c: int = 1, p99: float = 10.0, **fields: object) -> Run:
    """A run as ``bench.load.record`` makes one: ``fields`` over plain, trustworthy figures."""
    figures: dict = {
        "label": f"c={c}", "tool": "wrk", "url": "http://127.0.0.1:9/", "concurrency": c, "duration_s": 1.0,
        "settings": {}, "requests": 1000, "errors": 0, "error_rate": 0.0, "throughput_rps": throughput,
        "latency_ms": Latency(p50=p99 / 2, p95=p99 * 0.9, p99=p99, mean=p99 / 2, max=p99),
        "latency_censored": False, "settle_s": 0.0, "settled": True, "server_cpu_s": 0.0, "server_cpu_cores": 0.0,
        "server_cpu_cores_by": {}, "cpu_ms_per_request": 0.0, "server_rss_mb": 50.0, "server_pss_mb": 40.0,
        "server_pss_idle_mb": 30.0, "generator_cpu_s": 0.0, "generator_cpu_cores": 0.0,
        "generator_saturated": False, "box_cpu_utilisation": 0.5, "box_saturated": False,
    }  # fmt: skip
    return Run.model_validate({**figures, **fields})


def results(**sections: object) -> Results:
    """A run of the lab in which nothing was measured, ``sections`` apart."""
    return Results(
        mode=MODES["quick"],
        started="2026-01-01T00:00:00+0000",
        machine=Machine(cpu_model="cpu", cpus=2, usable_cpus=2, memory_gib=4.0, os="os", kernel="k", versions={}),
        cpu_layout=CpuLayoutRecord(servers=[0, 1], generator=[0, 1], pinned=False),
        **sections,
    )


class FakeServer:
    name = "fake"
    port = 9
    base_url = "http://127.0.0.1:9"
    settings = ASYNC


class SyncServer(FakeServer):
    settings = SYNC


class Pool(FakeServer):
    def __init__(self, settings: dict) -> None:
        self.settings = settings


class FakeLab:
    """What an experiment uses of the lab (``registry.Context``): its mode and cores, the
    stack's servers, a generator handing out canned runs in order (each labelled as asked)."""

    def __init__(self, runs: list[Run] = ()) -> None:
        self.mode = MODES["tiny"]
        self.cores = 2
        self.runs = list(runs)
        self.gen = self
        self.scratch = Path("/nonexistent")
        self.stack = SimpleNamespace(
            async_pool=FakeServer(), sync_pool=SyncServer(), downstream=FakeServer(), url="http://127.0.0.1:9"
        )
        self.failures: list[str] = []

    def section(self, title: str) -> None:
        pass

    def failed(self, what: str, exc: BaseException) -> str:
        self.failures.append(f"{what} failed: {exc}")
        return self.failures[-1]

    def async_one(self) -> FakeServer:
        return FakeServer()

    def limits(self, run: Run, settings: dict, concurrency: int, wait_s: float, cpu_ms_ref: float | None = None):
        return physical_limits(run, settings, concurrency, wait_s, self.cores, False, cpu_ms_ref)

    def wrk(self, label: str, *args, **kwargs) -> Run:
        return self.runs.pop(0).model_copy(update={"label": label})

    def settle(self, servers: object) -> tuple[float, bool]:
        return 0.0, True  # the stand-in servers are idle at once

    hold = jobs = websockets = wrk  # claim 1's connections held, claim 10's jobs, claim 11: canned runs alike


class DbLab(FakeLab):
    """A lab for claim 12: its pools are stand-ins, and an async pool asked for more
    connections than the budget allows is refused at start (``refuse``), as a real master is."""

    def __init__(self, runs: list[Run] = (), refuse: bool = True) -> None:
        super().__init__(runs)
        self.refuse = refuse
        self.servers = self
        self.database = SimpleNamespace(server=FakeServer())

    def pool(self, name: str, kind: str, env: dict) -> Pool:
        return Pool(ASYNC if kind == "async" else SYNC)

    @contextmanager
    def started(self, *servers: object) -> Iterator[None]:
        yield

    def start(self, server: object) -> None:
        if self.refuse:
            raise LabError("error: the database connection budget does not fit: 2 x 51 > max_connections 100")

    def stop(self, server: object) -> None:
        pass
