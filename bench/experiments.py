"""The experiments: each claim of DESIGN.md run, measured, set against its physical limit.

The yardsticks (DESIGN.md, "Physical limits"):
- Little's law: a server holding ``slots`` requests at once, each waiting ``latency``, cannot
  answer more than ``slots / latency`` per second. slots = concurrency for an event loop,
  workers for sync workers, workers x threads for gthread.
- The utilisation law: ``cores / cpu-seconds-per-request``, with the CPU time per request
  measured (server CPU seconds / requests), and the cores the servers could use (the ones not
  busy with the load generator, whose CPU is measured too). A Python process runs Python
  code on one core at a time (the GIL), so ``cores`` is also capped by the busy processes.
  On a curve, the CPU time per request is the lowest that server showed on that path at any
  concurrency: what a request costs at best, so a cost that rises under load (contention,
  queueing, context switches) shows as a shortfall against the limit, not as a moved limit.
  A point is CPU-bound when the servers used >= 80 % of the cores they could use.
- The box: wrk against nginx ``return 200``, the first row of the report.

Verdicts: ``holds`` / ``does not hold`` when the measured ratio is inside / outside the band
stated with each claim; ``inconclusive`` when the run cannot tell (errors above 1 %, a
saturated load generator, a server still busy from the previous run, too few requests), with
the reason. An experiment that crashes is recorded as inconclusive with its error; the rest
of the run goes on and the report is still written.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import time
import traceback
import urllib.request
from collections.abc import Callable
from pathlib import Path

from native import nginx_config
from native.settings import StackSettings

from .load import Generator
from .machine import machine_info
from .modes import Mode
from .procs import CpuLayout, LabError, Server, Servers, free_port

BIN = Path(sys.executable).parent
HOLDS, FAILS, INCONCLUSIVE = "holds", "does not hold", "inconclusive"
VERDICTS = (HOLDS, FAILS, INCONCLUSIVE)
MAX_ERROR_RATE = 0.01
# The servers used at least this share of the cores they could use: the CPU set the pace.
CPU_BUSY = 0.8
# The status a server that has no WebSocket to offer answers a handshake with, instead of 101.
REFUSALS = (400, 403, 404, 405, 426)

CLAIMS = {
    1: "One async process holds thousands of concurrent connections.",
    2: "Async excels at I/O-bound work: throughput close to concurrency / latency.",
    3: "CPU work inside the event loop stalls every other request on that worker.",
    4: "A sync worker serves one request at a time: throughput close to workers / latency.",
    5: "Sync scales by adding worker processes (and threads, with gthread).",
    6: "Sync costs more memory per concurrent request.",
    7: "Sync is straightforward for CPU-bound work: throughput close to cores / cpu-time.",
    8: "asyncio.gather makes N waits cost one wait.",
    9: "A blocking call inside async def stalls the loop; asyncio.to_thread fixes it.",
    10: "Background work runs after the response is sent.",
    11: "WSGI cannot hold a WebSocket; ASGI can.",
}


def quality(runs: list[dict], expect_errors: bool = False) -> str | None:
    """Why a set of runs cannot decide a claim, or None when they can."""
    for run in runs:
        if run["generator_saturated"]:
            return f"the load generator saturated its CPU in '{run['label']}', so it, not the server, set the pace"
        if not run.get("settled", True):
            return f"the server was still busy from the previous run when '{run['label']}' started"
        if not expect_errors and run["error_rate"] > MAX_ERROR_RATE:
            return f"{run['errors']} of {run['requests']} requests failed in '{run['label']}'"
        if run["requests"] < 2:
            return f"too few requests completed in '{run['label']}'"
        side = run.get("background")
        if side is not None and (side["errors"] or not side["requests"]):
            return (
                f"the interfering load in '{run['label']}' did not run cleanly "
                f"({side['requests']} requests, {side['errors']} errors)"
            )
    return None


def decide(ok: bool, reason: str, runs: list[dict], expect_errors: bool = False) -> tuple[str, str]:
    problem = quality(runs, expect_errors)
    if problem:
        return INCONCLUSIVE, problem
    return (HOLDS if ok else FAILS), reason


def physical_limits(
    run: dict,
    settings: dict,
    concurrency: int,
    wait_s: float,
    cores: int,
    pinned: bool,
    cpu_ms_ref: float | None = None,
) -> dict:
    """The limits one run could not beat: Little's law (when each request waits ``wait_s``) and
    the utilisation law (the free cores over the CPU time a request takes: ``cpu_ms_ref``
    when given, the lowest measured on the curve, else this run's own)."""
    workers = settings.get("workers", 1)
    wc = settings.get("worker_class", "")
    if wc == "sync":
        slots = min(concurrency, workers)
    elif wc == "gthread":
        slots = min(concurrency, workers * settings.get("threads", 1))
    elif wc == "gevent":
        slots = min(concurrency, workers * settings.get("worker_connections", 1000))
    else:  # an event loop: every connection is in flight at once
        slots = concurrency
    limits: dict = {"slots": slots}
    if wait_s:
        limits["little_rps"] = slots / wait_s
    # Unpinned, the generator's measured CPU is not available to the servers.
    free_cores = cores if pinned else cores - run["generator_cpu_cores"]
    busy = min(concurrency, workers)  # each process runs Python on one core at a time (the GIL)
    usable = max(0.05, min(free_cores, busy))
    cpu_ms = cpu_ms_ref if cpu_ms_ref else run["cpu_ms_per_request"]
    limits["cores_available"] = usable
    limits["cpu_ms_per_request_ref"] = cpu_ms
    # How much dearer a request was in this run than at best (1.0 on the cheapest point).
    limits["cpu_cost_rise"] = run["cpu_ms_per_request"] / cpu_ms if cpu_ms else 0.0
    limits["utilisation"] = run.get("server_cpu_cores", 0.0) / usable
    if cpu_ms > 0:
        limits["cpu_rps"] = usable / (cpu_ms / 1000)
    throughput = run["throughput_rps"]
    for law in ("little", "cpu"):
        if f"{law}_rps" in limits:
            limits[f"{law}_ratio"] = throughput / limits[f"{law}_rps"] if limits[f"{law}_rps"] else 0.0
    bound = min((v for k, v in limits.items() if k.endswith("_rps")), default=0.0)
    limits["bound_rps"] = bound
    # Which limit set the pace, as measured: the CPU when the servers kept it busy, else the wait.
    cpu_bound = "cpu_rps" in limits and ("little_rps" not in limits or limits["utilisation"] >= CPU_BUSY)
    limits["binding"] = "cpu" if cpu_bound else "little"
    limits["ratio"] = throughput / bound if bound else 0.0
    return {k: (round(v, 3) if isinstance(v, float) else v) for k, v in limits.items()}


class Lab:
    def __init__(self, mode: Mode, out: Path, say: Callable[[str], None] = print) -> None:
        self.mode = mode
        self.out = out
        self.say = say
        self.layout = CpuLayout.detect()
        self.cores = len(self.layout.servers)
        self.total_cpus = len(set(self.layout.servers) | set(self.layout.generator))
        self.tmp = Path(tempfile.mkdtemp(prefix="twinstack-bench-"))
        self.servers = Servers(out / "logs", self.layout)
        self.gen = Generator(self.layout.generator, self.total_cpus, self._progress, shared=not self.layout.pinned)
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
        )
        env = self.stack.environment()
        for name in list(env):  # the caller's pool settings must not leak into the lab's servers
            if name.startswith(("TWINSTACK_ASYNC_", "TWINSTACK_SYNC_W", "TWINSTACK_SYNC_THREADS")):
                env.pop(name)
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        env["TWINSTACK_ASYNC_UPSTREAM"] = f"127.0.0.1:{self.stack.async_port}"
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
    ) -> Server:
        """A twinstack pool: the service's own gunicorn.conf.py, only the environment differs."""
        prefix = "ASYNC" if service == "async" else "SYNC"
        port = port or free_port()
        env = {
            **self.env,
            f"TWINSTACK_{prefix}_PORT": str(port),
            # No recycling mid-run: a respawn would be measured as a stall.
            f"TWINSTACK_{prefix}_MAX_REQUESTS": "0",
            f"TWINSTACK_{prefix}_LOG_LEVEL": "warning",
            "TWINSTACK_RUN_DIR": str(self.tmp / name),
        }
        effective = workers or (self.cores if service == "async" else 2 * self.cores + 1)
        env[f"TWINSTACK_{prefix}_WORKERS"] = str(effective)
        settings = {"server": "gunicorn", "workers": effective}
        if service == "async":
            settings["worker_class"] = "uvicorn_worker.UvicornWorker"
        else:
            env["TWINSTACK_SYNC_WORKER_CLASS"] = worker_class
            env["TWINSTACK_SYNC_THREADS"] = str(threads)
            settings.update(worker_class=worker_class, threads=threads if worker_class == "gthread" else 1)
            if worker_class == "gevent":
                settings["worker_connections"] = 1000
        conf = "fastapi_service/gunicorn.conf.py" if service == "async" else "flask_service/gunicorn.conf.py"
        return Server(name, argv("gunicorn", "-c", conf), port, env, settings=settings)

    def peer(self, name: str, argv: list[str], settings: dict, port: int, health: str = "/health") -> Server:
        env = {**self.env, "TWINSTACK_RUN_DIR": str(self.tmp / name)}
        return Server(name, argv, port, env, health_path=health, settings=settings)

    def nginx(self) -> Server:
        binary = self.stack.nginx()
        if binary is None:
            raise LabError("nginx is not installed (Debian/Ubuntu: sudo apt-get install nginx).")
        self.ceiling_port, self.proxy_port = free_port(), free_port()
        env = {
            **self.env,
            "TWINSTACK_BENCH_CEILING_PORT": str(self.ceiling_port),
            "TWINSTACK_BENCH_PROXY_PORT": str(self.proxy_port),
        }
        prefix = nginx_config.render(env, self.tmp / "stack" / "nginx")
        template = Path(__file__).with_name("nginx-bench.conf.template").read_text()
        (prefix / "conf.d" / "bench.conf").write_text(nginx_config.render_template(template, env))
        globals_ = self.stack.nginx_globals(prefix)
        nginx_config.check(binary, prefix, globals_)
        argv = [binary, "-p", f"{prefix}/", "-c", "nginx.conf", "-e", "stderr", "-g", globals_]
        return Server("nginx", argv, self.ceiling_port, env, health_path="/", settings={"server": "nginx"})

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
            results["ceiling"] = self.gen.wrk(
                "nginx return 200 (no app)",
                f"http://127.0.0.1:{self.ceiling_port}/",
                m.proxy_concurrency * 2,
                m.duration_s,
                [self.nginx_server],
                settings=self.nginx_server.settings,
            )
            curves = results["curves"] = self.curves()
            # Claim 6 measures the one-worker async server's memory while it is fresh: before
            # claim 1 has it hold thousands of connections and claims 3 and 9 give it a
            # process pool.
            experiments = [
                *self.guarded((2,), lambda: self.claim_2(curves["io"])),
                *self.guarded((4,), lambda: self.claim_4(curves["io"])),
                *self.guarded((5, 6), self.claims_5_and_6),
                *self.guarded((1,), self.claim_1),
                *self.guarded((3, 9), self.claims_3_and_9),
                *self.guarded((7,), lambda: self.claim_7(curves["cpu"])),
                *self.guarded((8,), self.claim_8),
                *self.guarded((10,), self.claim_10),
                *self.guarded((11,), self.claim_11),
            ]
            results["experiments"] = sorted(experiments, key=lambda e: e["claim"])
            results["proxy"] = self.section_guarded("proxy", self.proxy, [])
            results["static"] = self.section_guarded("static", self.static, [])
            results["peers"] = self.section_guarded("peers", self.peers, {"groups": {}})
            results["failures"] = self.failures
        finally:
            self.servers.stop_all()
            shutil.rmtree(self.tmp, ignore_errors=True)
        results["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        results["elapsed_s"] = round(time.time() - started, 1)
        return results

    # --- an experiment that crashes does not take the run with it ---------------------------------
    def _failed(self, what: str, exc: Exception) -> str:
        message = f"{what} failed: {type(exc).__name__}: {exc}".strip()
        log = self.out / "logs" / "lab-errors.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("a") as fh:
            fh.write(f"--- {what}\n{traceback.format_exc()}\n")
        self.failures.append(message.splitlines()[0][:300])
        self.say(f"  !! {self.failures[-1]} (traceback in logs/lab-errors.log)")
        return self.failures[-1]

    def guarded(self, claims: tuple[int, ...], experiment: Callable[[], dict | list[dict]]) -> list[dict]:
        """Run one experiment; if it raises, its claims are inconclusive with the error as reason."""
        try:
            out = experiment()
        except Exception as exc:  # recorded in the report; the run goes on
            reason = self._failed(f"claim {'/'.join(map(str, claims))}", exc)
            zero = {"name": "-", "formula": "-", "value": 0.0, "unit": ""}
            return [
                {"claim": c, "text": CLAIMS[c], "what": "the experiment could not run", "runs": [],
                 "yardstick": zero, "measured": {"name": "-", "value": 0.0, "unit": ""}, "ratio": 0.0,
                 "band": "-", "verdict": INCONCLUSIVE, "reason": reason, "chart": ""}
                for c in claims
            ]  # fmt: skip
        return out if isinstance(out, list) else [out]

    def section_guarded(self, name: str, section: Callable[[], object], empty: object) -> object:
        try:
            return section()
        except Exception as exc:  # recorded in the report; the run goes on
            self._failed(name, exc)
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
        m = self.mode
        servers = self.curve_servers()
        self.servers.start(*servers.values())
        out: dict = {}
        for kind, path, levels in (
            ("io", f"/io?delay_ms={m.io_delay_ms}", m.io_levels),
            ("cpu", f"/cpu?work={m.cpu_work}", m.cpu_levels),
        ):
            self.section(f"curve: {path} against concurrency {levels[0]} -> {levels[-1]}")
            series = {}
            wait_s = m.io_delay_ms / 1000 if kind == "io" else 0.0
            for name, server in servers.items():
                points = [
                    self.gen.wrk(f"{name} {path}", server.base_url + path, c, m.duration_s, [server], server.settings)
                    for c in levels
                ]
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

    def claim_1(self) -> dict:
        m = self.mode
        self.section(f"claim 1: {m.connections} connections on one async process")
        server = self.async_one()
        path = f"/io?delay_ms={m.connections_delay_ms}"
        settings = {**server.settings, "waves": m.connections_waves, "delay_ms": m.connections_delay_ms}
        run = self.gen.hold(
            f"one uvicorn worker, {m.connections} connections",
            server,
            path,
            m.connections,
            m.connections_waves,
            m.connections_delay_ms / 1000,
            settings,
        )
        ratio = run["held_concurrency"] / m.connections
        run["pss_kb_per_connection"] = round(run["server_pss_mb"] * 1024 / m.connections, 2)
        verdict, reason = decide(
            ratio >= 0.8,
            f"in the worst of {m.connections_waves} waves, {run['held_concurrency']} of the {m.connections} "
            f"requests were in flight at the same instant and answered before a second {m.connections_delay_ms} ms "
            f"wait could pass (p50 {run['latency_ms']['p50']:.0f} ms, p99 {run['latency_ms']['p99']:.0f} ms; beyond "
            f"the wait, one core handling {m.connections} requests of {run['cpu_ms_per_request']:.2f} ms of CPU each): "
            "served side by side on one "
            f"process, none queued behind another; {run['pss_kb_per_connection']:.0f} KiB of memory (PSS) per "
            "connection",
            [run],
        )
        return self._experiment(
            1,
            what=f"{m.connections} keep-alive connections to one uvicorn worker (direct), a GET {path} sent on "
            f"every one at once, {m.connections_waves} times",
            runs=[run],
            yardstick=("connections open", "N connections, each with a request in flight", m.connections, "requests"),
            measured=("requests in flight at once, answered within 2 waits", run["held_concurrency"], "requests"),
            ratio=ratio,
            band="ratio >= 0.8",
            verdict=(verdict, reason),
        )

    def claim_2(self, io: dict) -> dict:
        points = io["series"]["async"]["points"]
        little = [p for p in points if p["limits"]["binding"] == "little"]
        cpu_bound = [p for p in points if p["limits"]["binding"] == "cpu"]
        worst = min(little, key=lambda p: p["limits"]["little_ratio"]) if little else points[-1]
        top = max(little, key=lambda p: p["concurrency"]) if little else points[-1]
        ratio = worst["limits"]["little_ratio"]
        knee = (
            f"; from c={cpu_bound[0]['concurrency']} on, the servers kept the CPU busy (>= {CPU_BUSY:.0%} of the "
            f"cores they could use), so the CPU, not the wait, set the pace "
            f"({cpu_bound[-1]['limits']['cpu_ratio']:.0%} of cores / cpu-time at c={cpu_bound[-1]['concurrency']})"
            if cpu_bound
            else ""
        )
        if little:
            verdict = decide(
                ratio >= 0.8,
                f"at every concurrency where the wait is the limit (up to c={top['concurrency']}), throughput was "
                f">= {ratio:.0%} of concurrency / latency{knee}",
                little,
            )
        else:
            verdict = (INCONCLUSIVE, "the CPU was busy at every level, so Little's law was never the binding limit")
        return self._experiment(
            2,
            what=f"{io['path']} on the async pool ({_describe(io['series']['async']['settings'])}), direct, "
            f"concurrency {io['levels'][0]} -> {io['levels'][-1]} (the /io curve)",
            runs=points,
            yardstick=(
                "Little's law",
                "concurrency / latency",
                top["limits"].get("little_rps", 0.0),
                "req/s",
            ),
            measured=("throughput", top["throughput_rps"], "req/s"),
            ratio=ratio,
            band=f"ratio >= 0.8 wherever the CPU was not busy (< {CPU_BUSY:.0%} of the usable cores)",
            verdict=verdict,
            chart="io",
        )

    def _stall(self, label: str, probe: str, interferers: list[tuple[str, str]]) -> list[dict]:
        """p99 of concurrent probe requests on one worker, alone and beside each interferer."""
        m = self.mode
        server = self.async_one()
        runs = []
        for name, path in [("alone", ""), *interferers]:
            background = (server.base_url + path, 1) if path else None
            run = self.gen.wrk(
                f"{label}: /io beside {name}",
                server.base_url + probe,
                8,
                m.duration_s,
                [server],
                {**server.settings, "beside": path or "nothing"},
                background=background,
            )
            run["beside"] = name
            runs.append(run)
        return runs

    def claims_3_and_9(self) -> list[dict]:
        m = self.mode
        server = self.async_one()
        probe = "/io?delay_ms=20"
        work = 60_000 if m.name != "tiny" else 30_000
        with urllib.request.urlopen(f"{server.base_url}/lab/cpu-in-loop?work={work}", timeout=30) as resp:
            cpu_ms = json.loads(resp.read())["cpu_ms"]
        # The process pool starts on first use; do not measure its start-up.
        urllib.request.urlopen(f"{server.base_url}/lab/cpu-in-process-pool?work=1", timeout=60).read()

        self.section(f"claim 3: /io p99 on one worker beside CPU work ({cpu_ms:.0f} ms) inside async def")
        claim3 = self._stall_claim(
            3,
            "cpu",
            probe,
            cpu_ms,
            ("CPU in async def (anti-pattern)", f"/lab/cpu-in-loop?work={work}"),
            ("CPU in a process pool (fix)", f"/lab/cpu-in-process-pool?work={work}"),
            what=f"one uvicorn worker (direct): wrk keeps 8 GET {probe} in flight while a second wrk sends one "
            f"request at a time to an endpoint that hashes for {cpu_ms:.0f} ms; alone, beside "
            "/lab/cpu-in-loop (CPU inside async def), beside /lab/cpu-in-process-pool (the fix)",
            # The claim is the stall; the fix is shown beside it.
            fix_decides=False,
        )
        block_ms = 100.0
        self.section(f"claim 9: /io p99 on one worker beside a {block_ms:.0f} ms blocking call in async def")
        claim9 = self._stall_claim(
            9,
            "blocking",
            probe,
            block_ms,
            ("time.sleep in async def (anti-pattern)", f"/lab/blocking-sleep?delay_ms={block_ms:.0f}"),
            ("asyncio.to_thread (fix)", f"/lab/to-thread-sleep?delay_ms={block_ms:.0f}"),
            what=f"one uvicorn worker (direct): 8 GET {probe} in flight; alone, beside /lab/blocking-sleep "
            f"(time.sleep({block_ms / 1000}) inside async def), beside /lab/to-thread-sleep "
            "(the same call in asyncio.to_thread)",
            fix_decides=True,
        )
        return [claim3, claim9]

    def _stall_claim(
        self,
        claim: int,
        label: str,
        probe: str,
        cost_ms: float,
        anti: tuple[str, str],
        fix: tuple[str, str],
        *,
        what: str,
        fix_decides: bool,
    ) -> dict:
        """p99 of the probe alone, beside the anti-pattern, beside its fix; the anti-pattern
        stalls when it adds at least half its own cost to the probe's p99."""
        runs = self._stall(label, probe, [anti, fix])
        base, stalled, fixed = (r["latency_ms"]["p99"] for r in runs)
        stalls = stalled - base >= 0.5 * cost_ms
        fixes = fixed - base < 0.5 * cost_ms
        band = "p99 grows by >= 0.5 x the cost of the blocking call"
        return self._experiment(
            claim,
            what=what,
            runs=runs,
            yardstick=("p99 alone + one blocking call", "p99(alone) + its cost", base + cost_ms, "ms"),
            measured=(f"p99 beside {anti[0]}", stalled, "ms"),
            ratio=(stalled - base) / cost_ms if cost_ms else 0.0,
            band=band + (", and with the fix by < 0.5 x" if fix_decides else ""),
            verdict=decide(
                stalls and (fixes or not fix_decides),
                f"p99 of 20 ms waits: {base:.0f} ms alone, {stalled:.0f} ms beside {anti[0]} "
                f"({cost_ms:.0f} ms a call), {fixed:.0f} ms beside {fix[0]}",
                runs,
            ),
            chart="stall",
        )

    def claim_4(self, io: dict) -> dict:
        settings = io["series"]["sync"]["settings"]
        workers = settings["workers"]
        points = io["series"]["sync"]["points"]
        full = [p for p in points if p["concurrency"] >= workers] or points[-1:]
        ratios = [p["limits"]["little_ratio"] for p in full]
        low, high = min(ratios), max(ratios)
        top = full[-1]
        return self._experiment(
            4,
            what=f"{io['path']} on the sync pool ({_describe(settings)}), direct, concurrency "
            f"{io['levels'][0]} -> {io['levels'][-1]} (the /io curve)",
            runs=points,
            yardstick=("Little's law", "workers / latency", top["limits"].get("little_rps", 0.0), "req/s"),
            measured=("throughput", top["throughput_rps"], "req/s"),
            ratio=top["limits"]["little_ratio"],
            band="0.8 <= ratio <= 1.1 at every concurrency >= workers",
            verdict=decide(
                low >= 0.8 and high <= 1.1,
                f"with {workers} workers and more requests than workers, throughput stayed at "
                f"{low:.0%}-{high:.0%} of workers / latency however many requests waited (p99 at "
                f"c={top['concurrency']}: {top['latency_ms']['p99']:.0f} ms)",
                full,
            ),
            chart="io",
        )

    def claims_5_and_6(self) -> list[dict]:
        m = self.mode
        top = max(m.scale)
        concurrency = 4 * top
        path = f"/io?delay_ms={m.io_delay_ms}"
        sync = {w: self.pool(f"sync-{w}-workers", "sync", workers=w) for w in m.scale}
        gthread = {
            t: self.pool(f"gthread-1x{t}", "sync", workers=1, worker_class="gthread", threads=t) for t in m.scale
        }
        self.section(f"claim 5: {path} at c={concurrency} on sync workers {m.scale} and gthread threads {m.scale}")
        self.servers.start(*sync.values(), *gthread.values())
        runs = []
        for family, servers in (("sync workers", sync), ("gthread threads", gthread)):
            for n, server in servers.items():
                run = self.gen.wrk(
                    f"{family}: {n}", server.base_url + path, concurrency, m.duration_s, [server], server.settings
                )
                run["limits"] = self.limits(run, server.settings, concurrency, m.io_delay_ms / 1000)
                run["family"], run["slots"] = family, n
                runs.append(run)
        ratios = [r["limits"]["little_ratio"] for r in runs]
        first, last = runs[0], runs[len(m.scale) - 1]
        scaling = last["throughput_rps"] / first["throughput_rps"] if first["throughput_rps"] else 0.0
        claim5 = self._experiment(
            5,
            what=f"GET {path}, {concurrency} concurrent (direct), on the sync pool with {', '.join(map(str, m.scale))} "
            f"workers, then on one gthread worker with {', '.join(map(str, m.scale))} threads",
            runs=runs,
            yardstick=("Little's law", "workers x threads / latency", last["limits"]["little_rps"], "req/s"),
            measured=(f"throughput with {top} workers", last["throughput_rps"], "req/s"),
            ratio=min(ratios),
            band="ratio >= 0.8 at every size (throughput grows with workers x threads)",
            verdict=decide(
                min(ratios) >= 0.8,
                f"{top} workers answered {scaling:.1f}x what 1 did (ideal {top}x); every size reached "
                f">= {min(ratios):.0%} of workers x threads / latency",
                runs,
            ),
            chart="scaling",
        )

        # Claim 6: the memory it takes to hold `top` requests at once, three ways.
        hold = max(200, m.io_delay_ms)
        async_one = self.async_one()
        self.section(f"claim 6: memory (PSS) holding {top} concurrent requests")
        mem_runs = []
        for label, server in (
            (f"sync: {top} workers", sync[top]),
            (f"gthread: 1 worker x {top} threads", gthread[top]),
            ("async: 1 uvicorn worker", async_one),
        ):
            run = self.gen.wrk(
                f"{label}, {top} in flight",
                f"{server.base_url}/io?delay_ms={hold}",
                top,
                m.duration_s,
                [server],
                server.settings,
            )
            run["pss_mb_per_request"] = round(run["server_pss_mb"] / top, 3)
            # What holding the requests added to what the idle server already had.
            run["pss_mb_added_per_request"] = round(max(0.0, run["server_pss_mb"] - run["server_pss_idle_mb"]) / top, 3)
            mem_runs.append(run)
        self.servers.stop(*sync.values(), *gthread.values())
        sync_mb, thread_mb, async_mb = (r["pss_mb_per_request"] for r in mem_runs)
        sync_add, _, async_add = (r["pss_mb_added_per_request"] for r in mem_runs)
        ratio = sync_mb / async_mb if async_mb else 0.0
        claim6 = self._experiment(
            6,
            what=f"GET /io?delay_ms={hold} with {top} requests in flight, direct, on: {top} sync workers, one "
            f"gthread worker with {top} threads, one uvicorn worker; peak PSS of each server's processes "
            "(proportional set size: pages shared between forked workers are split among them)",
            runs=mem_runs,
            yardstick=("memory per request of the async worker", "PSS(async) / requests in flight", async_mb, "MiB"),
            measured=("memory per request of the sync pool", sync_mb, "MiB"),
            ratio=ratio,
            band="ratio >= 1.5",
            verdict=decide(
                ratio >= 1.5,
                f"{sync_mb:.1f} MiB per concurrent request on sync workers vs {async_mb:.1f} MiB on one event loop "
                f"({ratio:.1f}x); threads sit between: {thread_mb:.1f} MiB. The cost is the processes held ready: "
                f"the requests themselves added {sync_add * 1024:.0f} KiB each on sync workers and "
                f"{async_add * 1024:.0f} KiB on the event loop to the idle servers' memory",
                mem_runs,
            ),
            chart="memory",
        )
        return [claim5, claim6]

    def claim_7(self, cpu: dict) -> dict:
        settings = cpu["series"]["sync"]["settings"]
        points = cpu["series"]["sync"]["points"]
        busy = [p for p in points if p["concurrency"] >= self.cores] or points[-1:]
        worst = min(busy, key=lambda p: p["limits"]["cpu_ratio"])
        top = busy[-1]
        return self._experiment(
            7,
            what=f"{cpu['path']} on the sync pool ({_describe(settings)}), direct, concurrency "
            f"{cpu['levels'][0]} -> {cpu['levels'][-1]} (the /cpu curve); CPU time per request measured "
            "as the pool's CPU seconds / requests, the yardstick taking the lowest on the curve",
            runs=points,
            yardstick=(
                "utilisation law",
                "cores / cpu-seconds-per-request",
                top["limits"].get("cpu_rps", 0.0),
                "req/s",
            ),
            measured=("throughput", top["throughput_rps"], "req/s"),
            ratio=worst["limits"]["cpu_ratio"],
            band="ratio >= 0.8 at every concurrency >= cores",
            verdict=decide(
                worst["limits"]["cpu_ratio"] >= 0.8,
                f"with at least as many requests as cores, sync workers reached >= {worst['limits']['cpu_ratio']:.0%} "
                f"of cores / cpu-time ({top['limits']['cpu_ms_per_request_ref']:.1f} ms of CPU a request at best, "
                f"{top['cpu_ms_per_request']:.1f} ms at c={top['concurrency']}; "
                f"{top['limits']['cores_available']:.2f} cores free of the generator)",
                busy,
            ),
            chart="cpu",
        )

    def claim_8(self) -> dict:
        m = self.mode
        calls, delay = 10, m.io_delay_ms
        path = f"/fanout?calls={calls}&delay_ms={delay}"
        self.section(f"claim 8: {path}, one request at a time")
        runs = [
            # At least 3 s: one after another, each request takes calls x delay.
            self.gen.wrk(
                f"{name} {path}",
                server.base_url + path,
                1,
                max(3, m.duration_s),
                [server, self.downstream],
                server.settings,
            )
            for name, server in (
                ("async (asyncio.gather)", self.async_pool),
                ("sync (one after another)", self.sync_pool),
            )
        ]
        async_p50, sync_p50 = runs[0]["latency_ms"]["p50"], runs[1]["latency_ms"]["p50"]
        ratio = async_p50 / delay
        return self._experiment(
            8,
            what=f"GET {path} (each call waits {delay} ms at the downstream service), one at a time, direct to "
            "each pool: FastAPI awaits the calls with asyncio.gather, Flask makes them one after another",
            runs=runs,
            yardstick=("one wait", "delay_ms", float(delay), "ms"),
            measured=("p50 latency with asyncio.gather", async_p50, "ms"),
            ratio=ratio,
            band=f"ratio <= 2 (at most two waits' worth, where one after another costs {calls})",
            verdict=decide(
                ratio <= 2,
                f"{calls} calls of {delay} ms: {async_p50:.0f} ms with asyncio.gather, {sync_p50:.0f} ms one after "
                f"another ({calls} x {delay} = {calls * delay} ms)",
                runs,
            ),
        )

    def claim_10(self) -> dict:
        m = self.mode
        delay = 500 if m.name != "tiny" else 200
        self.section(f"claim 10: POST /jobs (a {delay} ms job) on both pools")
        runs = [
            self.gen.jobs(f"{name} POST /jobs", server, m.jobs, delay)
            for name, server in (("async (BackgroundTasks)", self.async_pool), ("sync (thread pool)", self.sync_pool))
        ]
        worst = max(r["latency_ms"]["p99"] for r in runs)
        after = all(r["finished_after_response"] == m.jobs for r in runs)
        ratio = worst / delay
        return self._experiment(
            10,
            what=f'{m.jobs} POST /jobs {{"delay_ms": {delay}}} to each pool (direct), each 202 timed; then every '
            "job polled (GET /jobs/{id}) until done, and its finish time compared with when its 202 arrived",
            runs=runs,
            yardstick=("the job's own duration", "delay_ms", float(delay), "ms"),
            measured=("p99 time to the 202", worst, "ms"),
            ratio=ratio,
            band="ratio <= 0.5 and every job finished after its response arrived",
            verdict=decide(
                ratio <= 0.5 and after,
                f"the 202 came back in <= {worst:.0f} ms, and all {sum(r['finished_after_response'] for r in runs)} "
                f"of {m.jobs * len(runs)} jobs of {delay} ms finished after their 202 had arrived: the response "
                "did not wait for the work",
                runs,
            ),
        )

    def claim_11(self) -> dict:
        m = self.mode
        base = f"ws://127.0.0.1:{self.stack.http_port}"
        self.section(f"claim 11: {m.websockets} WebSockets through nginx to each pool")
        ok = self.gen.websockets(
            f"async: {m.websockets} WebSockets", f"{base}/async/ws/echo", m.websockets, [self.async_pool]
        )
        # Straight to gunicorn: the WSGI server itself answers, not nginx.
        sync_url = f"ws://127.0.0.1:{self.stack.sync_port}/ws/echo"
        refused = self.gen.websockets("sync: one WebSocket, direct", sync_url, 1, [self.sync_pool])
        ratio = ok["opened"] / m.websockets
        held = ok["opened"] == m.websockets and ok["errors"] == 0
        refused_ok = refused["opened"] == 0 and refused["refused_status"] in REFUSALS
        return self._experiment(
            11,
            what=f"through nginx: {m.websockets} WebSockets opened at once to /async/ws/echo, one message echoed on "
            "each while all are open; then one WebSocket handshake for /ws/echo straight to the sync pool's gunicorn",
            runs=[ok, refused],
            yardstick=("WebSockets asked for", "count", float(m.websockets), "sockets"),
            measured=("WebSockets held and echoing", float(ok["opened"]), "sockets"),
            ratio=ratio,
            band=f"every async WebSocket echoes (ratio 1.0) and the sync handshake gets an HTTP refusal "
            f"({', '.join(map(str, REFUSALS))}), not 101",
            verdict=decide(
                held and refused_ok,
                f"the async pool held {ok['opened']} of {m.websockets} WebSockets at once (echo p99 "
                f"{ok['latency_ms']['p99']:.0f} ms); the sync pool answered the handshake with HTTP "
                f"{refused['refused_status'] or 'nothing'}, not 101: a WSGI app is called with one request and returns "
                "one response, with no way to keep the connection, so the Flask service has no WebSocket route",
                [ok],
            ),
        )

    # --- proxy, static, peers -----------------------------------------------------------------
    def proxy(self) -> list[dict]:
        m = self.mode
        c = m.proxy_concurrency
        self.section(f"proxy: GET /health direct and through nginx, c={c}")
        runs = []
        for name, pool in (("async", self.async_pool), ("sync", self.sync_pool)):
            for label, url, watch in (
                ("direct", f"{pool.base_url}/health", [pool]),
                ("nginx, upstream keep-alive", f"http://127.0.0.1:{self.proxy_port}/keepalive/{name}/health", None),
                ("nginx, no upstream keep-alive", f"http://127.0.0.1:{self.proxy_port}/close/{name}/health", None),
                ("twinstack nginx config", f"http://127.0.0.1:{self.stack.http_port}/{name}/health", None),
            ):
                run = self.gen.wrk(
                    f"{name}: {label}", url, c, m.duration_s, watch or [pool, self.nginx_server], pool.settings
                )
                run["pool"], run["path_kind"] = name, label
                runs.append(run)
        for name in ("async", "sync"):
            direct = next(r for r in runs if r["pool"] == name and r["path_kind"] == "direct")
            for r in runs:
                if r["pool"] == name:
                    r["ratio_to_direct"] = (
                        round(r["throughput_rps"] / direct["throughput_rps"], 4) if direct["throughput_rps"] else 0.0
                    )
        duration = max(2, m.duration_s * 2)
        self.section(f"mixed user traffic through nginx: Locust, {m.locust_users} users, {duration} s")
        mixed = self.gen.locust(
            f"Locust: {m.locust_users} users, mixed traffic",
            f"http://127.0.0.1:{self.stack.http_port}",
            m.locust_users,
            duration,
            [self.nginx_server, self.async_pool, self.sync_pool],
            self.out,
        )
        mixed["pool"], mixed["path_kind"], mixed["ratio_to_direct"] = "both", "twinstack nginx config", 0.0
        runs.append(mixed)
        return runs

    def static(self) -> list[dict]:
        m = self.mode
        c = m.proxy_concurrency
        asgi_port, wsgi_port = free_port(), free_port()
        ctl = self.tmp / "static-ctl"
        ctl.mkdir(exist_ok=True)
        workers = {"asgi": self.cores, "wsgi": 2 * self.cores + 1}
        asgi = self.peer(
            "static-asgi",
            argv("gunicorn", "-k", "uvicorn_worker.UvicornWorker", "-w", workers["asgi"],
                 "-b", f"127.0.0.1:{asgi_port}", "--control-socket", ctl / "asgi.ctl", "bench.static_app:asgi_app()"),
            {"server": "gunicorn", "worker_class": "uvicorn_worker.UvicornWorker", "workers": workers["asgi"],
             "app": "Starlette StaticFiles"},
            asgi_port,
        )  # fmt: skip
        wsgi = self.peer(
            "static-wsgi",
            argv("gunicorn", "-w", workers["wsgi"], "-b", f"127.0.0.1:{wsgi_port}",
                 "--control-socket", ctl / "wsgi.ctl", "bench.static_app:wsgi_app()"),
            {"server": "gunicorn", "worker_class": "sync", "workers": workers["wsgi"], "app": "Flask static folder"},
            wsgi_port,
        )  # fmt: skip
        self.servers.start(asgi, wsgi)
        asset = "/static/style.css"
        self.section(f"static: {asset} from nginx and from Python, c={c}")
        runs = []
        for label, url, server in (
            ("nginx (lab server, no access log)", f"http://127.0.0.1:{self.proxy_port}{asset}", self.nginx_server),
            ("nginx (twinstack config)", f"http://127.0.0.1:{self.stack.http_port}{asset}", self.nginx_server),
            ("Python: Starlette StaticFiles on uvicorn workers", asgi.base_url + asset, asgi),
            ("Python: Flask static on gunicorn sync workers", wsgi.base_url + asset, wsgi),
        ):
            run = self.gen.wrk(label, url, c, m.duration_s, [server], server.settings)
            runs.append(run)
        self.servers.stop(asgi, wsgi)
        nginx_rps = runs[0]["throughput_rps"]
        for r in runs:
            r["ratio_to_nginx"] = round(r["throughput_rps"] / nginx_rps, 4) if nginx_rps else 0.0
        return runs

    def peers(self) -> dict:
        m = self.mode
        n = self.cores
        ctl = self.tmp / "peers-ctl"
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
        peers = []
        for name, (command, settings) in specs.items():
            port = free_port()
            peers.append(self.peer(name, command(port), settings, port))
        self.servers.start(*peers)
        curve = self.curve_servers()
        contenders = {
            "ASGI": [("twinstack async pool", self.async_pool), *[(p.name, p) for p in peers[:3]]],
            "WSGI": [
                ("twinstack sync pool", self.sync_pool),
                ("twinstack gthread", curve["gthread"]),
                ("twinstack gevent", curve["gevent"]),
                *[(p.name, p) for p in peers[3:]],
            ],
        }
        out: dict = {"groups": {}}
        for workload, path, c in (
            ("io", f"/io?delay_ms={m.io_delay_ms}", m.peer_io_concurrency),
            ("cpu", f"/cpu?work={m.cpu_work}", m.peer_cpu_concurrency),
        ):
            self.section(f"peers: {path}, c={c}")
            for group, entries in contenders.items():
                rows = []
                for name, server in entries:
                    run = self.gen.wrk(f"{group} {name} {path}", server.base_url + path, c, m.duration_s, [server])
                    run.update(peer=name, settings=server.settings, twinstack=name.startswith("twinstack"))
                    rows.append(run)
                rows.sort(key=lambda r: r["throughput_rps"], reverse=True)
                for rank, row in enumerate(rows, 1):
                    row["rank"] = rank
                out["groups"].setdefault(group, {})[workload] = {"path": path, "concurrency": c, "rows": rows}
        self.servers.stop(*peers, curve["gthread"], curve["gevent"])
        return out

    # --- shape of an experiment ---------------------------------------------------------------
    def _experiment(
        self,
        claim: int,
        *,
        what: str,
        runs: list[dict],
        yardstick: tuple[str, str, float, str],
        measured: tuple[str, float, str],
        ratio: float,
        band: str,
        verdict: tuple[str, str],
        chart: str | None = None,
    ) -> dict:
        name, formula, value, unit = yardstick
        self.say(f"  => claim {claim}: {verdict[0].upper()}: {verdict[1]}")
        return {
            "claim": claim,
            "text": CLAIMS[claim],
            "what": what,
            "runs": runs,
            "yardstick": {"name": name, "formula": formula, "value": round(float(value), 3), "unit": unit},
            "measured": {"name": measured[0], "value": round(float(measured[1]), 3), "unit": measured[2]},
            "ratio": round(float(ratio), 4),
            "band": band,
            "verdict": verdict[0],
            "reason": verdict[1],
            "chart": chart or "",
        }


def argv(program: str, *args: object) -> list[str]:
    """A command line for one of the virtualenv's programs."""
    return [str(BIN / program), *(str(a) for a in args)]


def _describe(settings: dict) -> str:
    parts = [settings.get("server", "")]
    if "worker_class" in settings:
        parts.append(f"-k {settings['worker_class']}")
    if "workers" in settings:
        parts.append(f"{settings['workers']} workers")
    if settings.get("threads", 1) > 1:
        parts.append(f"{settings['threads']} threads")
    if "worker_connections" in settings:
        parts.append(f"{settings['worker_connections']} connections each")
    if "app" in settings:
        parts.append(settings["app"])
    return ", ".join(p for p in parts if p)
