"""The lab: starts the servers, runs every experiment, and gathers the results.

``Lab.run`` starts the stack (downstream, both pools, nginx) on free loopback ports, measures
the box's ceiling and the ``/io`` and ``/cpu`` curves, then each group of claims
(``bench.claims``), the proxy and static experiments (``bench.edge``) and the peers
(``bench.peers``). An experiment that crashes is recorded as inconclusive with its error; the
rest of the run goes on and the report is still written.
"""

from __future__ import annotations

import shutil
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from native import nginx_config
from native.settings import StackSettings
from twinstack_runtime.serving import async_workers, sync_workers

from . import edge, overhead, peers
from .claims import cpu_bound, features, io_bound, scaling, stall
from .load import Generator
from .machine import machine_info
from .modes import Mode
from .procs import CpuLayout, LabError, Server, Servers, argv, compress_logs, free_port
from .verdicts import experiment, physical_limits, unmeasured


class Lab:
    def __init__(self, mode: Mode, out: Path, say: Callable[[str], None] = print) -> None:
        self.mode = mode
        self.out = out
        self.say = say
        self.layout = CpuLayout.detect()
        self.cores = len(self.layout.servers)
        self.total_cpus = len(set(self.layout.servers) | set(self.layout.generator))
        self.tmp = Path(tempfile.mkdtemp(prefix="twinstack-bench-"))
        (out / "logs").mkdir(parents=True, exist_ok=True)  # nginx -t opens its log files there
        self.servers = Servers(out / "logs", self.layout)
        self.gen = Generator(
            self.layout.generator, self.total_cpus, self._progress, shared=not self.layout.pinned, scratch=self.tmp
        )
        self.t0 = time.monotonic()
        self.failures: list[str] = []
        self.stack = StackSettings(
            http_port=free_port(),
            async_port=free_port(),
            sync_port=free_port(),
            downstream_port=free_port(),
            nginx_status_port=free_port(),
            run_dir=self.tmp / "stack",
            log_dir=out / "logs",
            # All lab traffic comes from one address; the per-client rate limit would
            # measure itself. The sync pool's in-flight limit stays as configured.
            rate_limit_rps=1_000_000,
            rate_limit_burst=1_000_000,
            expensive_rate_limit_rps=1_000_000,
            expensive_rate_limit_burst=1_000_000,
            # Claim 11 holds thousands of WebSockets from this one address, through nginx.
            client_max_conns=65535,
            ws_max_per_client=65535,
            sync_max_inflight_per_client=65535,
            lab_routes=True,  # the anti-patterns claims 3 and 9 measure
        )
        env = self.stack.environment()
        # The caller's pool settings must not leak into the lab's servers.
        own = ("TWINSTACK_ASYNC_", "TWINSTACK_SYNC_W", "TWINSTACK_SYNC_THREADS", "TWINSTACK_SYNC_LOG_")
        for name in list(env):
            if name.startswith(own):
                env.pop(name)
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        env["TWINSTACK_ASYNC_UPSTREAM"] = f"127.0.0.1:{self.stack.async_port}"
        # nginx writes its access log itself; logs/nginx.log keeps what it prints at start.
        env["TWINSTACK_NGINX_ACCESS_LOG"] = str((out / "logs" / "nginx-access.log").resolve())
        env["TWINSTACK_NGINX_ERROR_LOG"] = str((out / "logs" / "nginx-error.log").resolve())
        self.env = env

    # --- progress -----------------------------------------------------------------------------
    def _elapsed(self) -> str:
        s = int(time.monotonic() - self.t0)
        return f"{s // 60:2d}:{s % 60:02d}"

    def _progress(self, m: dict) -> None:
        flags = " GENERATOR SATURATED" if m["generator_saturated"] else ""
        self.say(
            f"  [{self._elapsed()}] {m['label']:<46} c={m['concurrency']:<5} {m['throughput_rps']:9.1f} req/s  "
            f"p99 {m['latency_ms']['p99']:8.1f} ms  errors {m['errors']}{flags}"
        )

    def section(self, title: str) -> None:
        self.say(f"[{self._elapsed()}] {title}")

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
        env: dict[str, str] | None = None,
    ) -> Server:
        """A twinstack pool: the service's own gunicorn.conf.py, only the environment differs.
        ``app`` runs another app on it (the overhead experiment's bare apps); ``env`` adds
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
            f"TWINSTACK_{prefix}_LOG_FILE": str((self.out / "logs" / f"{name}-app.log").resolve()),
            "TWINSTACK_RUN_DIR": str(self.tmp / name),
            **(env or {}),
        }
        effective = workers or (async_workers(self.cores) if service == "async" else sync_workers(self.cores))
        env[f"TWINSTACK_{prefix}_WORKERS"] = str(effective)
        settings = {"server": "gunicorn", "workers": effective}
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

    def peer(self, name: str, argv: list[str], settings: dict, port: int, health: str = "/health") -> Server:
        env = {**self.env, "TWINSTACK_RUN_DIR": str(self.tmp / name)}
        return Server(name, argv, port, env, health_path=health, settings=settings)

    def nginx(self) -> Server:
        self.ceiling_port, self.proxy_port = free_port(), free_port()
        env = {
            **self.env,
            "TWINSTACK_BENCH_CEILING_PORT": str(self.ceiling_port),
            "TWINSTACK_BENCH_PROXY_PORT": str(self.proxy_port),
            # gunicorn's sync worker closes every connection; gthread shows keep-alive on a WSGI pool.
            "TWINSTACK_BENCH_GTHREAD_UPSTREAM": f"127.0.0.1:{self.curve_servers()['gthread'].port}",
        }
        return self.render_nginx("nginx", env, "nginx-bench.conf.template", self.ceiling_port, health_path="/")

    def render_nginx(self, name: str, env: dict[str, str], template: str, port: int, health_path: str) -> Server:
        """twinstack's nginx configuration rendered from ``env``, with one of the lab's own
        server files beside it, in a prefix of its own."""
        binary = self.stack.nginx()
        if binary is None:
            raise LabError("nginx is not installed (Debian/Ubuntu: sudo apt-get install nginx).")
        prefix = nginx_config.render(env, self.tmp / name / "nginx")
        text = Path(__file__).with_name(template).read_text()
        (prefix / "conf.d" / "bench.conf").write_text(nginx_config.render_template(text, env))
        globals_ = self.stack.nginx_globals(prefix)
        nginx_config.check(binary, prefix, globals_)
        argv = [binary, "-p", f"{prefix}/", "-c", "nginx.conf", "-e", "stderr", "-g", globals_]
        return Server(name, argv, port, env, health_path=health_path, settings={"server": "nginx"})

    # --- the run ------------------------------------------------------------------------------
    def run(self) -> dict:
        m = self.mode
        started = time.time()
        results: dict = {
            "schema": 1,
            "mode": m.as_dict(),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
            "machine": machine_info(),
            "cpu_layout": self.layout.as_dict(),
            "notes": [
                "Every server listens on 127.0.0.1; wrk and the lab's clients run on the same machine.",
                "Worker recycling (max_requests) is off during the lab so a respawn is never measured as a stall.",
                "nginx's per-client rate limit is raised: all lab traffic comes from one address.",
            ],
        }
        if not self.layout.pinned:
            results["notes"].append(
                f"Generator and servers share the {self.total_cpus} CPUs (pinning them apart needs 4 or more): "
                "the generator's CPU time is recorded with every run and subtracted from the cores a "
                "CPU-bound yardstick allows."
            )
        try:
            port = self.stack.downstream_port
            self.downstream = Server(
                "downstream",
                argv("uvicorn", "--factory", "downstream_service.main:create_app", "--host", "127.0.0.1",
                     "--port", port, "--no-access-log", "--log-level", "warning"),
                port,
                self.env,
            )  # fmt: skip
            self.async_pool = self.pool("async", "async", port=self.stack.async_port)
            self.sync_pool = self.pool("sync", "sync", port=self.stack.sync_port)
            self.nginx_server = self.nginx()
            self.section("starting the stack (downstream, async pool, sync pool, nginx)")
            self.servers.start(self.downstream, self.async_pool, self.sync_pool, self.nginx_server)

            self.section("the box's ceiling: wrk against nginx `return 200`")
            results["ceiling"] = self.section_guarded(
                "ceiling",
                lambda lab: lab.gen.wrk(
                    "nginx return 200 (no app)",
                    f"http://127.0.0.1:{lab.ceiling_port}/",
                    m.proxy_concurrency * 2,
                    m.duration_s,
                    [lab.nginx_server],
                    settings=lab.nginx_server.settings,
                ),
                None,
            )
            curves = results["curves"] = self.curves()
            # Claim 6 measures the one-worker async server's memory while it is fresh: before
            # claim 1 has it hold thousands of connections and claims 3 and 9 give it a
            # process pool.
            experiments = [
                *self.guarded((2,), lambda lab: io_bound.claim_2(lab, curves["io"])),
                *self.guarded((4,), lambda lab: io_bound.claim_4(lab, curves["io"])),
                *self.guarded((5, 6), scaling.claims_5_and_6),
                *self.guarded((1,), io_bound.claim_1),
                *self.guarded((3, 9), stall.claims_3_and_9),
                *self.guarded((7,), lambda lab: cpu_bound.claim_7(lab, curves["cpu"])),
                *self.guarded((8,), features.claim_8),
                *self.guarded((10,), features.claim_10),
                *self.guarded((11,), features.claim_11),
            ]
            results["experiments"] = sorted(experiments, key=lambda e: e["claim"])
            results["overhead"] = self.section_guarded("overhead", overhead.overhead, {})
            results["proxy"] = self.section_guarded("proxy", edge.proxy, [])
            results["static"] = self.section_guarded("static", edge.static, [])
            results["peers"] = self.section_guarded("peers", peers.peers, {"groups": {}})
            results["failures"] = self.failures
        finally:
            self.servers.stop_all()
            shutil.rmtree(self.tmp, ignore_errors=True)
        compress_logs(self.out / "logs")
        results["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        results["elapsed_s"] = round(time.time() - started, 1)
        return results

    # --- an experiment that crashes does not take the run with it ---------------------------------
    def failed(self, what: str, exc: Exception) -> str:
        """Record a part of the run that could not be measured (traceback in logs/lab-errors.log)."""
        message = f"{what} failed: {type(exc).__name__}: {exc}".strip()
        log = self.out / "logs" / "lab-errors.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("a") as fh:
            fh.write(f"--- {what}\n{''.join(traceback.format_exception(exc))}\n")
        self.failures.append(message.splitlines()[0][:300])
        self.say(f"  !! {self.failures[-1]} (traceback in logs/lab-errors.log)")
        return self.failures[-1]

    def guarded(self, claims: tuple[int, ...], run: Callable[[Lab], dict | list[dict]]) -> list[dict]:
        """Run one experiment; if it raises, its claims are inconclusive with the error as reason."""
        try:
            out = run(self)
        except Exception as exc:  # recorded in the report; the run goes on
            reason = self.failed(f"claim {'/'.join(map(str, claims))}", exc)
            return [unmeasured(c, reason) for c in claims]
        return out if isinstance(out, list) else [out]

    def section_guarded(self, name: str, run: Callable[[Lab], object], empty: object) -> object:
        try:
            return run(self)
        except Exception as exc:  # recorded in the report; the run goes on
            self.failed(name, exc)
            return empty

    # --- curves: throughput and p99 against concurrency ------------------------------------------
    def curve_servers(self) -> dict[str, Server]:
        if not hasattr(self, "_curve_servers"):
            self._curve_servers = {
                "async": self.async_pool,
                "sync": self.sync_pool,
                "gthread": self.pool("gthread", "sync", worker_class="gthread", threads=4),
                "gevent": self.pool("gevent", "sync", worker_class="gevent"),
            }
        return self._curve_servers

    def curves(self) -> dict:
        """Throughput and p99 against concurrency on /io and /cpu for each serving model. A
        configuration that will not start, or fails mid-curve, is reported and left out."""
        m = self.mode
        servers = dict(self.curve_servers())
        for name, exc in self.servers.start_each(*servers.values()).items():
            self.failed(f"curve server {name}", exc)
        servers = {kind: server for kind, server in servers.items() if self.servers.alive(server)}
        out: dict = {}
        for kind, path, levels in (
            ("io", f"/io?delay_ms={m.io_delay_ms}", m.io_levels),
            ("cpu", f"/cpu?work={m.cpu_work}", m.cpu_levels),
        ):
            self.section(f"curve: {path} against concurrency {levels[0]} -> {levels[-1]}")
            series = {}
            wait_s = m.io_delay_ms / 1000 if kind == "io" else 0.0
            for name, server in list(servers.items()):
                try:
                    points = [
                        self.gen.wrk(
                            f"{name} {path}", server.base_url + path, c, m.duration_s, [server], server.settings
                        )
                        for c in levels
                    ]
                except LabError as exc:  # recorded; the other configurations are still measured
                    self.failed(f"curve {kind} {name}", exc)
                    self.servers.stop(server)
                    del servers[name]  # nor measured on the next curve
                    continue
                # What a request costs at best on this server and path: the utilisation law's yardstick.
                ref = min((p["cpu_ms_per_request"] for p in points if p["cpu_ms_per_request"] > 0), default=0.0)
                for p in points:
                    p["limits"] = self.limits(p, server.settings, p["concurrency"], wait_s, cpu_ms_ref=ref)
                series[name] = {"settings": server.settings, "points": points}
            out[kind] = {"path": path, "levels": list(levels), "series": series}
        return out

    def limits(
        self, run: dict, settings: dict, concurrency: int, wait_s: float, cpu_ms_ref: float | None = None
    ) -> dict:
        return physical_limits(run, settings, concurrency, wait_s, self.cores, self.layout.pinned, cpu_ms_ref)

    # --- the claims ---------------------------------------------------------------------------
    def async_one(self) -> Server:
        if not hasattr(self, "_async_one"):
            self._async_one = self.pool("async-1-worker", "async", workers=1)
        self.servers.start(self._async_one)
        return self._async_one

    def experiment(self, claim: int, **record) -> dict:
        """A claim's record (``verdicts.experiment``), its verdict said as the run goes."""
        verdict, reason = record["verdict"]
        self.say(f"  => claim {claim}: {verdict.upper()}: {reason}")
        return experiment(claim, **record)
