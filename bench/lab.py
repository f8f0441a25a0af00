"""The lab: the one ``registry.Context`` every experiment runs in, and the run that gathers
their records into ``records.Results``.

``Lab`` asks the runner, through its command line, for the environment native mode gives its
programs (``python -m native env``, with the lab's ports, folders and limits), renders its nginx
with it (``python -m native render-nginx``), and starts the stack (downstream, both pools,
nginx) on free loopback ports. ``Lab.run`` then runs every registered experiment in the
registry's order (``bench.registry``): the box's ceiling and the curves, each group of claims
(``bench.claims``), the overhead, proxy, static and peer experiments. An experiment that
crashes is recorded as inconclusive with its error; the rest of the run goes on and the report
is still written.
"""

from __future__ import annotations

import shutil
import tempfile
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from twinstack_runtime.ports import free_port
from twinstack_runtime.serving import async_workers, sync_workers

from . import registry, runner
from .database import MAX_CONNECTIONS as DB_MAX_CONNECTIONS
from .database import LabDatabase
from .load import Generator
from .machine import machine_info
from .modes import Mode
from .procs import CpuLayout, Server, Servers, argv, compress_logs
from .records import ClaimRecord, Limits, Results, Run, Settings
from .registry import Stack
from .verdicts import physical_limits

# What the lab changes of the stack's settings (TWINSTACK_*, see .env.example).
LAB_SETTINGS = {
    # All lab traffic comes from one address; the per-client rate limit would measure itself.
    # The sync pool's in-flight limit stays as configured.
    "TWINSTACK_RATE_LIMIT_RPS": "1000000",
    "TWINSTACK_RATE_LIMIT_BURST": "1000000",
    "TWINSTACK_EXPENSIVE_RATE_LIMIT_RPS": "1000000",
    "TWINSTACK_EXPENSIVE_RATE_LIMIT_BURST": "1000000",
    # Claim 11 holds thousands of WebSockets from this one address, through nginx.
    "TWINSTACK_CLIENT_MAX_CONNS": "65535",
    "TWINSTACK_WS_MAX_PER_CLIENT": "65535",
    "TWINSTACK_SYNC_MAX_INFLIGHT_PER_CLIENT": "65535",
    "TWINSTACK_ASYNC_DB_MAX_INFLIGHT_PER_CLIENT": "65535",
}
# twinstack's FastAPI app with /lab/* added; no deployment serves it.
LAB_APP = "bench.lab_app:create_app()"
# The caller's pool settings must not leak into the lab's servers: each pool sets its own.
OWN_SETTINGS = ("TWINSTACK_ASYNC_", "TWINSTACK_SYNC_W", "TWINSTACK_SYNC_THREADS", "TWINSTACK_SYNC_LOG_")
NOTES = [
    "Every server listens on 127.0.0.1; wrk and the lab's clients run on the same machine.",
    "Worker recycling (max_requests) is off during the lab so a respawn is never measured as a stall.",
    "nginx's per-client rate limit is raised: all lab traffic comes from one address.",
]


class Lab:
    """Starts nothing until ``run``; every attribute is set here."""

    def __init__(self, mode: Mode, out: Path, say: Callable[[str], None] = print, only: Sequence[str] = ()) -> None:
        self.mode = mode
        self.out = out
        self.logs = out / "logs"
        self.say = say
        self.t0 = time.monotonic()
        self.layout = CpuLayout.detect()
        self.cores = len(self.layout.servers)
        self.total_cpus = len(set(self.layout.servers) | set(self.layout.generator))
        self.failures: list[str] = []
        # Every experiment, or those asked for and the ones whose sections they take.
        self.experiments = registry.select(registry.load(), only)
        self.logs.mkdir(parents=True, exist_ok=True)  # nginx -t opens its log files there
        self.servers = Servers(self.logs, self.layout)
        self.scratch = Path(tempfile.mkdtemp(prefix="twinstack-bench-"))
        try:
            self.database = LabDatabase()
        except BaseException:
            shutil.rmtree(self.scratch, ignore_errors=True)
            raise
        self.gen = Generator(
            self.layout.generator, self.total_cpus, self._progress, shared=not self.layout.pinned,
            scratch=self.scratch, out=out, pace_rps=self.mode.pace_rps,
        )  # fmt: skip
        try:
            ports = {name: free_port() for name in ("http", "async", "sync", "downstream", "nginx_status")}
            self.env = self._environment(ports)
            self.stack = self._stack(ports)
            # The app with the lab's anti-patterns (bench/lab_app.py): claims 3, 9 and 14 call them.
            self.async_one_server = self.pool("async-1-worker", "async", workers=1, app=LAB_APP)
        except BaseException:
            shutil.rmtree(self.scratch, ignore_errors=True)
            self.database.delete()
            raise

    def _environment(self, ports: Mapping[str, int]) -> dict[str, str]:
        """The environment native mode would give the stack's programs, with the lab's settings."""
        env = runner.environment(
            {
                **{f"TWINSTACK_{name.upper()}_PORT": str(port) for name, port in ports.items()},
                "TWINSTACK_RUN_DIR": str(self.scratch / "stack"),
                "TWINSTACK_LOG_DIR": str(self.logs.resolve()),
                # Every pool connects to the lab's own PostgreSQL (bench/database.py).
                "TWINSTACK_DATABASE_URL": self.database.url,
                "TWINSTACK_DB_MAX_CONNECTIONS": str(DB_MAX_CONNECTIONS),
                **LAB_SETTINGS,
            }
        )
        for name in list(env):
            if name.startswith(OWN_SETTINGS) and name not in LAB_SETTINGS:
                env.pop(name)
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        env["TWINSTACK_ASYNC_UPSTREAM"] = f"127.0.0.1:{ports['async']}"
        return env

    def _stack(self, ports: Mapping[str, int]) -> Stack:
        downstream = Server(
            "downstream",
            argv("uvicorn", "--factory", "downstream_service.main:create_app", "--host", "127.0.0.1",
                 "--port", ports["downstream"], "--no-access-log", "--log-level", "warning"),
            ports["downstream"],
            self.env,
        )  # fmt: skip
        curves = {
            "async": self.pool("async", "async", port=ports["async"]),
            "sync": self.pool("sync", "sync", port=ports["sync"]),
            # gunicorn's sync worker closes every connection; gthread shows keep-alive on a WSGI pool.
            "gthread": self.pool("gthread", "sync", worker_class="gthread", threads=4),
            "gevent": self.pool("gevent", "sync", worker_class="gevent"),
        }
        ceiling_port, proxy_port = free_port(), free_port()
        nginx = self.render_nginx(
            "nginx",
            "nginx-bench.conf.template",
            ceiling_port,
            {
                "TWINSTACK_BENCH_CEILING_PORT": str(ceiling_port),
                "TWINSTACK_BENCH_PROXY_PORT": str(proxy_port),
                "TWINSTACK_BENCH_GTHREAD_UPSTREAM": f"127.0.0.1:{curves['gthread'].port}",
            },
        )
        return Stack(
            downstream=downstream,
            async_pool=curves["async"],
            sync_pool=curves["sync"],
            nginx=nginx,
            url=f"http://127.0.0.1:{ports['http']}",
            ceiling_url=f"http://127.0.0.1:{ceiling_port}",
            proxy_url=f"http://127.0.0.1:{proxy_port}",
            curves=curves,
        )

    # --- progress -----------------------------------------------------------------------------
    def _elapsed(self) -> str:
        s = int(time.monotonic() - self.t0)
        return f"{s // 60:2d}:{s % 60:02d}"

    def _progress(self, m: Run) -> None:
        flags = " GENERATOR SATURATED" if m.generator_saturated else ""
        self.say(
            f"  [{self._elapsed()}] {m.label:<46} c={m.concurrency:<5} {m.throughput_rps:9.1f} req/s  "
            f"p99 {m.latency_ms.p99:8.1f} ms  errors {m.errors}{flags}"
        )

    def section(self, title: str) -> None:
        self.say(f"[{self._elapsed()}] {title}")

    def failed(self, what: str, exc: BaseException) -> str:
        """Record a part of the run that could not be measured (traceback in logs/lab-errors.log)."""
        message = f"{what} failed: {type(exc).__name__}: {exc}".strip()
        with (self.logs / "lab-errors.log").open("a") as fh:
            fh.write(f"--- {what}\n{''.join(traceback.format_exception(exc))}\n")
        self.failures.append(message.splitlines()[0][:300])
        self.say(f"  !! {self.failures[-1]} (traceback in logs/lab-errors.log)")
        return self.failures[-1]

    # --- servers ------------------------------------------------------------------------------
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
        """A twinstack pool: the service's own gunicorn.conf.py, only the environment differs.
        ``app`` runs another app on it (the overhead experiment's bare apps, the lab's app); ``env`` adds
        settings (its switches); at ``log_level`` info the access lines are written (to
        logs/<name>-app.log, through the same handler as natively)."""
        prefix = "ASYNC" if service == "async" else "SYNC"
        port = port or free_port()
        env = {
            **self.env,
            f"TWINSTACK_{prefix}_PORT": str(port),
            # No recycling mid-run: a respawn would be measured as a stall.
            f"TWINSTACK_{prefix}_MAX_REQUESTS": "0",
            f"TWINSTACK_{prefix}_LOG_LEVEL": log_level,
            f"TWINSTACK_{prefix}_LOG_FILE": str((self.logs / f"{name}-app.log").resolve()),
            "TWINSTACK_RUN_DIR": str(self.scratch / name),
            **(env or {}),
        }
        effective = workers or (async_workers(self.cores) if service == "async" else sync_workers(self.cores))
        env[f"TWINSTACK_{prefix}_WORKERS"] = str(effective)
        settings: Settings = {"server": "gunicorn", "workers": effective}
        if service == "async":
            settings["worker_class"] = "fastapi_service.worker.Worker"
        else:
            env["TWINSTACK_SYNC_WORKER_CLASS"] = worker_class
            env["TWINSTACK_SYNC_THREADS"] = str(threads)
            settings.update(worker_class=worker_class, threads=threads if worker_class == "gthread" else 1)
            if worker_class == "gevent":
                settings["worker_connections"] = 1000
        conf = "fastapi_service/gunicorn.conf.py" if service == "async" else "flask_service/gunicorn.conf.py"
        command = argv("gunicorn", "-c", conf, *([app] if app else []))
        if app:
            settings["app"] = app
        return Server(name, command, port, env, settings=settings)

    def peer(self, name: str, argv: list[str], settings: Settings, port: int, health: str = "/health") -> Server:
        env = {**self.env, "TWINSTACK_RUN_DIR": str(self.scratch / name)}
        return Server(name, argv, port, env, health_path=health, settings=settings)

    def async_one(self) -> Server:
        self.servers.start(self.async_one_server)
        return self.async_one_server

    def render_nginx(self, name: str, template: str | None, port: int, env: Mapping[str, str]) -> Server:
        """twinstack's nginx configuration rendered by the runner from the stack's environment
        with ``env`` over it, one of the lab's own server files beside it, in a prefix of its
        own (none: twinstack's configuration alone); its logs in logs/<name>-access.log and
        logs/<name>-error.log (logs/<name>.log keeps what nginx prints at start). ``port``
        answers its health check on /."""
        logs = self.logs.resolve()
        env = {
            **self.env,
            "TWINSTACK_NGINX_ACCESS_LOG": str(logs / f"{name}-access.log"),
            "TWINSTACK_NGINX_ERROR_LOG": str(logs / f"{name}-error.log"),
            **env,
        }
        templates = [Path(__file__).with_name(template)] if template else []
        rendered = runner.render_nginx(env, self.scratch / name / "nginx", templates)
        return Server(name, rendered.argv, port, env, health_path="/", settings={"server": "nginx"})

    def limits(
        self, run: Run, settings: Settings, concurrency: int, wait_s: float, cpu_ms_ref: float | None = None
    ) -> Limits:
        return physical_limits(run, settings, concurrency, wait_s, self.cores, self.layout.pinned, cpu_ms_ref)

    # --- the run ------------------------------------------------------------------------------
    def run(self) -> Results:
        started = time.time()
        notes = list(NOTES)
        if not self.layout.pinned:
            notes.append(
                f"Generator and servers share the {self.total_cpus} CPUs (pinning them apart needs 4 or more): "
                "the generator's CPU time is recorded with every run and subtracted from the cores a "
                "CPU-bound yardstick allows."
            )
        machine = machine_info(nginx=self.stack.nginx.argv[0])
        records: list[ClaimRecord] = []
        sections: dict[str, Any] = {}
        try:
            stack = self.stack
            self.section("starting the lab's PostgreSQL and applying the migrations")
            self.servers.start(self.database.server)
            self.database.prepare()
            self.section("starting the stack (downstream, async pool, sync pool, nginx)")
            self.servers.start(stack.downstream, stack.async_pool, stack.sync_pool, stack.nginx)
            for experiment in self.experiments:
                out = experiment.execute(self, sections)
                if not experiment.claims:
                    sections[experiment.id] = out
                    continue
                for record in out:
                    self.say(f"  => claim {record.claim}: {record.verdict.upper()}: {record.reason}")
                records += out
        finally:
            self.servers.stop_all()
            shutil.rmtree(self.scratch, ignore_errors=True)
            self.database.delete()
        compress_logs(self.logs)
        return Results(
            mode=self.mode,
            started=time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
            finished=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            elapsed_s=round(time.time() - started, 1),
            machine=machine,
            cpu_layout=self.layout.record(),
            notes=notes,
            failures=self.failures,
            experiments=sorted(records, key=lambda r: r.claim),
            **sections,
        )
