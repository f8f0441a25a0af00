"""Load generators and the one shape every measured run is recorded in.

- wrk (from the OS packages) for throughput and latency: a C event loop that keeps hundreds
  of connections busy on one core, where Locust would saturate first;
- a raw asyncio client for claim 1 (open N connections, send a request on each at once);
- the websockets client for claim 11, httpx for background jobs (claim 10);
- Locust, headless, for mixed user traffic, where realistic user behaviour is the point.

The generator's own CPU time is measured (``wait4`` rusage of its process, or this thread's
CPU time) and a run where it used >= 90 % of the CPU it could get is marked saturated: its
figures then say as much about the generator as about the server. The CPU it could get is
its threads' worth of cores, and, where it shares the CPUs with the servers, no more than
the servers left over.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import json
import math
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from .procs import ROOT, LabError, Sampler, Server, _pinned, settle
from .records import Background, Latency, Run, Settings

WRK_SCRIPT = Path(__file__).with_name("wrk_json.lua")
# wrk reads one script: the staggered runs get wrk_json.lua with wrk_stagger.lua after it.
WRK_STAGGER = Path(__file__).with_name("wrk_stagger.lua")
# The share of pgbench's transactions whose latency is logged for the percentiles.
PGBENCH_SAMPLING = 0.1
# A Lua file that makes wrk's requests, and the arguments it is given.
Script = tuple[Path, Sequence[str]]
SATURATED = 0.9
# Above this share of all CPUs busy, the box itself is the limit of the run.
BOX_SATURATED = 0.95


def wrk_binary() -> str:
    path = shutil.which("wrk")
    if path is None:
        raise LabError(
            "wrk is not installed: the lab's load generator comes from the OS packages "
            "(Debian/Ubuntu: sudo apt-get install wrk; `make bench` installs it when run as root)."
        )
    return path


def percentile(values: Sequence[float], pct: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    # Nearest rank: the smallest value with at least pct % of the values at or below it.
    rank = math.ceil(pct / 100 * len(ordered))
    return ordered[min(len(ordered), max(1, rank)) - 1]


def record(
    *,
    label: str,
    tool: str,
    url: str,
    concurrency: int,
    duration_s: float,
    requests: int,
    errors: int,
    latency_ms: dict[str, float],
    sampler: Sampler,
    generator_cpu_s: float,
    generator_cores: int,
    total_cpus: int,
    shared: bool,
    settled: tuple[float, bool],
    settings: Settings | None = None,
    answered: int | None = None,
    time_bounded: bool = False,
) -> Run:
    """One measured run, every figure a number (the report and results.json read these).

    ``requests`` counts what was sent and ``errors`` what failed; ``answered`` (default:
    requests - errors) the good responses, the only ones throughput counts. A ``time_bounded``
    run (wrk: as many requests as fit in the duration) stops with requests still waiting."""
    wall = max(sampler.wall_s, 1e-9)
    gen_cores_used = generator_cpu_s / wall
    server_cpu = sampler.cpu_s
    box_util = sampler.box_busy_s / (wall * total_cpus)
    # The CPU the generator could get: its threads' cores, and sharing the CPUs with the
    # servers, no more than they left over.
    gen_cap = min(generator_cores, total_cpus - server_cpu / wall) if shared else generator_cores
    good = max(0, requests - errors) if answered is None else answered
    throughput = good / duration_s if duration_s else 0.0
    return Run(
        label=label,
        tool=tool,
        url=url,
        concurrency=concurrency,
        duration_s=round(duration_s, 3),
        settings=settings or {},
        requests=requests,
        errors=errors,
        error_rate=errors / requests if requests else 1.0,
        throughput_rps=throughput,
        latency_ms=Latency(**{k: round(float(v), 3) for k, v in latency_ms.items()}),
        # Little's law: with `concurrency` requests always in flight, each took concurrency /
        # throughput on average. Past a third of the run, the slowest were still waiting when
        # it ended and their latencies are missing from the percentiles (throughput is right).
        latency_censored=time_bounded and (throughput <= 0 or concurrency / throughput > duration_s / 3),
        settle_s=round(settled[0], 2),
        settled=settled[1],
        server_cpu_s=round(server_cpu, 4),
        server_cpu_cores=round(server_cpu / wall, 4),
        server_cpu_cores_by={name: round(cpu / wall, 4) for name, cpu in sampler.cpu_s_by_server.items()},
        cpu_ms_per_request=round(1000 * server_cpu / requests, 4) if requests else 0.0,
        server_rss_mb=round(sampler.peak_rss / 2**20, 2),
        server_pss_mb=round(sampler.peak_pss / 2**20, 2),
        server_pss_idle_mb=round(sampler.idle_pss / 2**20, 2),
        generator_cpu_s=round(generator_cpu_s, 4),
        generator_cpu_cores=round(gen_cores_used, 4),
        generator_saturated=gen_cores_used >= SATURATED * max(gen_cap, 0.05),
        box_cpu_utilisation=round(min(box_util, 1.0), 4),
        box_saturated=box_util >= BOX_SATURATED,
    )


class Generator:
    """Runs the load generators on the generator's CPUs and records each run."""

    def __init__(
        self,
        cpus: Sequence[int],
        total_cpus: int,
        progress: Callable[[Run], None],
        shared: bool,
        scratch: Path,
        out: Path,
        pace_rps: int = 0,
    ) -> None:
        self.cpus = tuple(cpus)
        self.pace_rps = pace_rps  # the mode's (bench/modes.py): 0 is as fast as wrk goes
        self.scratch = scratch  # the lab's temporary directory (wrk's staggered script)
        self.out = out  # the report's folder: Locust's statistics, its log in logs/
        self.total_cpus = total_cpus
        self.shared = shared  # the servers run on the generator's CPUs too
        self.progress = progress
        # wrk threads: one per generator CPU, at most two (one wrk thread drives ~100k req/s).
        self.wrk_threads = max(1, min(2, len(self.cpus)))

    def settle(self, servers: Sequence[Server]) -> tuple[float, bool]:
        """Waits for the servers to be idle (procs.settle); a stand-in lab's may not."""
        return settle(servers)

    # --- wrk ---------------------------------------------------------------------------------
    def _start_wrk(
        self,
        url: str,
        concurrency: int,
        duration_s: int,
        stagger_ms: int = 0,
        script: Script | None = None,
        headers: Sequence[str] = (),
    ) -> subprocess.Popen:
        threads = min(self.wrk_threads, concurrency)
        path, args = WRK_SCRIPT, []
        if stagger_ms:
            path = self._script(WRK_STAGGER)
            args = ["--", str(stagger_ms), str(concurrency // threads)]  # wrk: connections // threads each
        elif script is not None:
            path = self._script(script[0])
            args = ["--", *script[1]]
        cmd = [
            wrk_binary(), f"-t{threads}", f"-c{concurrency}", f"-d{duration_s}s", "--timeout", "30s",
            *(arg for header in headers for arg in ("-H", header)), "-s", str(path), url, *args,
        ]  # fmt: skip
        env = dict(os.environ)
        if self.pace_rps:  # wrk_json.lua: each connection's wait between its requests
            env["TWINSTACK_WRK_PACE_MS"] = str(max(1, round(concurrency * 1000 / self.pace_rps)))
        return subprocess.Popen(
            cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
            preexec_fn=_pinned(self.cpus),
        )  # fmt: skip

    def _script(self, extra: Path) -> Path:
        """wrk reads one script: wrk_json.lua (the summary the lab parses) with ``extra`` after it."""
        script = self.scratch / extra.name
        if not script.exists():
            script.write_text(WRK_SCRIPT.read_text() + "\n" + extra.read_text())
        return script

    @staticmethod
    def _finish_wrk(proc: subprocess.Popen) -> tuple[dict, float]:
        _, usage = _wait(proc)
        out = ""
        if proc.stdout:
            with proc.stdout:
                out = proc.stdout.read()
        line = next((ln for ln in out.splitlines() if ln.startswith("TWINSTACK_WRK ")), None)
        if proc.returncode != 0 or line is None:
            raise LabError(f"wrk failed ({proc.returncode}): {out.strip()[-500:]}")
        return json.loads(line.removeprefix("TWINSTACK_WRK ")), usage.ru_utime + usage.ru_stime

    def wrk(
        self,
        label: str,
        url: str,
        concurrency: int,
        duration_s: int,
        watch: Sequence[Server],
        settings: Settings | None = None,
        background: tuple[str, int] | None = None,
        stagger_ms: int = 0,
        script: Script | None = None,
        headers: Sequence[str] = (),
    ) -> Run:
        """One wrk run against ``url``; ``background`` = (url, concurrency) of a second wrk that
        loads the same server meanwhile (the stall experiments), summarised in the run;
        ``stagger_ms`` spreads the connections' first requests over that long (wrk_stagger.lua);
        ``script`` = (a Lua file of bench/, its arguments) makes the requests (wrk_orders.lua);
        ``headers`` ("Name: value") go with every request (``Connection: close`` makes wrk open
        a new connection for each: it reconnects whenever a response is not kept alive)."""
        settled = self.settle(watch)
        other = self._start_wrk(background[0], background[1], duration_s + 1) if background else None
        side = None
        try:
            if other is not None:
                time.sleep(0.3)  # let the interfering load reach the server first
            with Sampler(watch) as sampler:
                proc = self._start_wrk(url, concurrency, duration_s, stagger_ms, script, headers)
                result, gen_cpu = self._finish_wrk(proc)
            if other is not None:
                side, side_cpu = self._finish_wrk(other)
                gen_cpu += side_cpu * duration_s / (duration_s + 1)
        except BaseException:
            if other is not None and other.poll() is None:
                other.kill()
                other.wait()
            raise
        threads = min(self.wrk_threads, concurrency) + (min(self.wrk_threads, background[1]) if background else 0)
        measured = record(
            label=label,
            tool="wrk",
            url=url,
            concurrency=concurrency,
            duration_s=result["duration_us"] / 1e6,
            requests=result["requests"],
            errors=_wrk_errors(result),
            # wrk counts every response; one with a 4xx/5xx status is an error, not throughput.
            answered=result["requests"] - result["status"],
            latency_ms={k: result[k] / 1000 for k in ("p50", "p95", "p99", "mean", "max")},
            sampler=sampler,
            generator_cpu_s=gen_cpu,
            generator_cores=threads,
            time_bounded=True,
            total_cpus=self.total_cpus,
            shared=self.shared,
            settled=settled,
            settings=settings,
        )
        if side is not None:
            measured.background = Background(
                url=background[0],
                concurrency=background[1],
                requests=side["requests"],
                errors=_wrk_errors(side),
                latency_ms_p50=side["p50"] / 1000,
            )
        self.progress(measured)
        return measured

    # --- pgbench: the database's own limit (claim 13) ------------------------------------------
    def pgbench(
        self,
        label: str,
        binary: str,
        url: str,
        script: str,
        clients: int,
        duration_s: int,
        watch: Sequence[Server],
        settings: Settings | None = None,
    ) -> Run:
        """pgbench running ``script`` on ``clients`` connections for ``duration_s``, prepared
        statements (the protocol psycopg uses after a statement's fifth run), one transaction in
        ``PGBENCH_SAMPLING`` logged and read back for the percentiles (logging them all, some
        150 000 lines a run, would cost the CPUs it measures)."""
        settled = self.settle(watch)
        folder = Path(tempfile.mkdtemp(prefix="pgbench-", dir=self.scratch))
        (folder / "script.sql").write_text(script)
        threads = max(1, min(self.wrk_threads, clients))
        # The password goes in pgbench's environment, not its command line (which ps shows).
        parts = urlsplit(url)
        public = parts._replace(netloc=f"{parts.username}@{parts.hostname}:{parts.port}").geturl()
        cmd = [
            binary, "--no-vacuum", "--protocol=prepared", f"--file={folder / 'script.sql'}", f"--client={clients}",
            f"--jobs={threads}", f"--time={duration_s}", "--log", f"--sampling-rate={PGBENCH_SAMPLING}",
            f"--log-prefix={folder / 'tx'}", public,
        ]  # fmt: skip
        with Sampler(watch) as sampler:
            proc = subprocess.Popen(
                cmd, cwd=folder, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                env={**os.environ, "PGPASSWORD": parts.password or ""}, preexec_fn=_pinned(self.cpus),
            )  # fmt: skip
            _, usage = _wait(proc)
        out = proc.stdout.read() if proc.stdout else ""
        summary = pgbench_summary(out)
        if proc.returncode != 0 or summary is None:
            raise LabError(f"pgbench failed ({proc.returncode}): {out.strip()[-500:]}")
        done, failed, tps = summary
        ms = pgbench_latencies(folder.glob("tx.*"))
        measured = record(
            label=label,
            tool="pgbench",
            url=public,
            concurrency=clients,
            duration_s=float(duration_s),
            requests=done + failed,
            errors=failed,
            latency_ms=_summary(ms),
            sampler=sampler,
            generator_cpu_s=usage.ru_utime + usage.ru_stime,
            generator_cores=threads,
            total_cpus=self.total_cpus,
            shared=self.shared,
            settled=settled,
            settings=settings,
        )
        measured.throughput_rps = tps
        shutil.rmtree(folder, ignore_errors=True)
        self.progress(measured)
        return measured

    @contextlib.contextmanager
    def _driving(self) -> Iterator[None]:
        """While this thread drives a load itself, it runs on the generator's CPUs."""
        own = os.sched_getaffinity(0)
        os.sched_setaffinity(0, self.cpus)
        try:
            yield
        finally:
            os.sched_setaffinity(0, own)

    def _client_run(
        self, *, label: str, tool: str, url: str, concurrency: int, elapsed: float, requests: int, errors: int,
        ms: Sequence[float], sampler: Sampler, generator_cpu_s: float, settled: tuple[float, bool],
        settings: Settings | None = None,
    ) -> Run:  # fmt: skip
        """A run driven from this process (one thread): latencies measured here, one core."""
        return record(
            label=label,
            tool=tool,
            url=url,
            concurrency=concurrency,
            duration_s=elapsed,
            requests=requests,
            errors=errors,
            latency_ms=_summary(ms),
            sampler=sampler,
            generator_cpu_s=generator_cpu_s,
            generator_cores=1,
            total_cpus=self.total_cpus,
            shared=self.shared,
            settled=settled,
            settings=settings,
        )

    # --- many connections at once (claim 1) -------------------------------------------------
    def hold(
        self, label: str, server: Server, path: str, connections: int, waves: int, wait_s: float, settings: Settings
    ) -> Run:
        """Open ``connections`` keep-alive connections, then send one request on every one of
        them at once, ``waves`` times; each request waits ``wait_s`` in the server.

        The concurrency held is counted, not inferred: see ``held_at_once``; the worst wave counts."""
        settled = self.settle([server])
        with self._driving(), Sampler([server]) as sampler:
            started = time.thread_time()
            latencies, errors, elapsed, held = asyncio.run(_hold(server.port, path, connections, waves, wait_s))
            gen_cpu = time.thread_time() - started
        measured = self._client_run(
            label=label,
            tool="asyncio",
            url=server.base_url + path,
            concurrency=connections,
            elapsed=elapsed,
            requests=len(latencies) + errors,
            errors=errors,
            ms=[x * 1000 for x in latencies],
            sampler=sampler,
            generator_cpu_s=gen_cpu,
            settled=settled,
            settings=settings,
        )
        measured.held_concurrency = held
        self.progress(measured)
        return measured

    # --- WebSockets (claim 11) ----------------------------------------------------------------
    def websockets(self, label: str, url: str, count: int, watch: Sequence[Server]) -> Run:
        settled = self.settle(watch)
        with self._driving(), Sampler(watch) as sampler:
            started = time.thread_time()
            t0 = time.perf_counter()
            latencies, errors, refused, accepted = asyncio.run(_websockets(url, count))
            elapsed = time.perf_counter() - t0
            gen_cpu = time.thread_time() - started
        measured = self._client_run(
            label=label,
            tool="websockets",
            url=url,
            concurrency=count,
            elapsed=elapsed,
            requests=count,
            errors=errors,
            ms=[x * 1000 for x in latencies],
            sampler=sampler,
            generator_cpu_s=gen_cpu,
            settled=settled,
        )
        measured.handshakes = accepted  # answered 101
        measured.opened = len(latencies)  # held open and echoing
        measured.refused_status = refused
        self.progress(measured)
        return measured

    # --- background jobs (claim 10) -----------------------------------------------------------
    def jobs(self, label: str, server: Server, count: int, delay_ms: int) -> Run:
        """POST /jobs ``count`` times; each 202 is timed, then every job is polled until done.
        A job that finished after its 202 arrived ran after the response was sent."""
        responses_ms: list[float] = []
        after_response = 0
        run_ms: list[float] = []
        errors = 0
        settled = self.settle([server])
        with (
            self._driving(),
            Sampler([server]) as sampler,
            httpx.Client(base_url=server.base_url, timeout=30) as client,
        ):
            started = time.thread_time()
            t0 = time.perf_counter()
            posted = []
            for _ in range(count):
                sent = time.perf_counter()
                resp = client.post("/jobs", json={"delay_ms": delay_ms})
                responses_ms.append((time.perf_counter() - sent) * 1000)
                if resp.status_code != 202:
                    errors += 1
                    continue
                posted.append((resp.json()["job_id"], time.time()))
            deadline = time.monotonic() + delay_ms / 1000 * count + 30
            for job_id, answered_at in posted:
                while True:
                    job = client.get(f"/jobs/{job_id}").json()
                    if job["status"] in ("done", "failed") or time.monotonic() > deadline:
                        break
                    time.sleep(0.05)
                if job["status"] != "done":
                    errors += 1
                    continue
                run_ms.append((job["finished_at"] - job["started_at"]) * 1000)
                after_response += job["finished_at"] > answered_at
            elapsed = time.perf_counter() - t0
            gen_cpu = time.thread_time() - started
        measured = self._client_run(
            label=label,
            tool="httpx",
            url=server.base_url + "/jobs",
            concurrency=1,
            elapsed=elapsed,
            requests=count,
            errors=errors,
            ms=responses_ms,
            sampler=sampler,
            generator_cpu_s=gen_cpu,
            settled=settled,
            settings={"job_delay_ms": delay_ms},
        )
        measured.jobs_done = len(run_ms)
        measured.finished_after_response = after_response
        measured.job_run_ms_p50 = round(statistics.median(run_ms), 3) if run_ms else 0.0
        self.progress(measured)
        return measured

    # --- Locust: mixed user traffic -----------------------------------------------------------
    def locust(self, label: str, host: str, users: int, duration_s: int, watch: Sequence[Server]) -> Run:
        base = self.out / "locust-mixed"
        cmd = [
            sys.executable, "-m", "locust", "--config", "loadtest/locust.conf", "--headless", "--only-summary",
            "--users", str(users), "--spawn-rate", str(users), "--run-time", f"{duration_s}s",
            "--stop-timeout", "5s", "--host", host, "--csv", str(base), "--profile", "bench",
            "--max-p95-async-ms", "0", "--max-p95-sync-ms", "0", "--max-p95-static-ms", "0",
        ]  # fmt: skip
        settled = self.settle(watch)
        log = self.out / "logs" / "locust.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        # Its output goes to a file: a pipe nobody reads while it runs could fill and block it.
        with Sampler(watch) as sampler, log.open("w") as sink:
            proc = subprocess.Popen(cmd, cwd=ROOT, stdout=sink, stderr=subprocess.STDOUT, preexec_fn=_pinned(self.cpus))
            _, usage = _wait(proc)
        stats_path = base.with_name(base.name + "_stats.csv")
        if not stats_path.exists():
            raise LabError(f"Locust wrote no statistics (exit {proc.returncode}): {log.read_text()[-500:]}")
        with stats_path.open() as fh:
            row = next(r for r in csv.DictReader(fh) if r["Name"] == "Aggregated")
        requests = int(row["Request Count"])
        measured = record(
            label=label,
            tool="locust",
            url=host,
            concurrency=users,
            duration_s=float(duration_s),
            requests=requests,
            errors=int(row["Failure Count"]),
            latency_ms={
                "p50": _num(row["50%"]),
                "p95": _num(row["95%"]),
                "p99": _num(row["99%"]),
                "mean": _num(row["Average Response Time"]),
                "max": _num(row["Max Response Time"]),
            },
            sampler=sampler,
            generator_cpu_s=usage.ru_utime + usage.ru_stime,
            generator_cores=1,
            total_cpus=self.total_cpus,
            shared=self.shared,
            settled=settled,
            settings={"users": users, "locustfile": "loadtest/locustfile.py"},
        )
        measured.throughput_rps = _num(row["Requests/s"]) - _num(row["Failures/s"])
        self.progress(measured)
        return measured


def _wait(proc: subprocess.Popen) -> tuple[int, resource.struct_rusage]:
    """Wait for a generator process; wait4 gives its own CPU time (rusage), the generator's
    cost. Interrupted (Ctrl-C), the generator is stopped too: no load outlives the lab."""
    try:
        _, status, usage = os.wait4(proc.pid, 0)
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, usage


def pgbench_summary(out: str) -> tuple[int, int, float] | None:
    """From pgbench's report: the transactions done, those that failed, and the rate
    (without the initial connection time); None when the report is not there."""
    found = {
        key: re.search(pattern, out)
        for key, pattern in (
            ("done", r"number of transactions actually processed: (\d+)"),
            ("failed", r"number of failed transactions: (\d+)"),
            ("tps", r"tps = ([\d.]+) \(without initial connection time\)"),
        )
    }
    if found["done"] is None or found["tps"] is None:
        return None
    failed = int(found["failed"].group(1)) if found["failed"] else 0
    return int(found["done"].group(1)), failed, float(found["tps"].group(1))


def pgbench_latencies(logs: Iterable[Path]) -> list[float]:
    """Every transaction's latency in ms from pgbench's per-transaction logs (``--log``): the
    third field of a line is its time in microseconds ("failed" or "skipped" when it has none)."""
    ms = []
    for log in logs:
        for line in log.read_text().splitlines():
            fields = line.split()
            if len(fields) >= 3 and fields[2].isdigit():
                ms.append(int(fields[2]) / 1000)
    return ms


def _wrk_errors(result: dict) -> int:
    return sum(result[k] for k in ("connect", "read", "write", "status", "timeout"))


def _num(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return 0.0


def _summary(ms: Sequence[float]) -> dict[str, float]:
    return {
        "p50": percentile(ms, 50),
        "p95": percentile(ms, 95),
        "p99": percentile(ms, 99),
        "mean": statistics.fmean(ms) if ms else 0.0,
        "max": max(ms, default=0.0),
    }


async def _open(port: int, count: int) -> list[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    """Up to ``count`` connections; one that cannot be opened is left out (and counted)."""
    conns = []
    for start in range(0, count, 250):  # in batches: stay inside the listen backlog
        opened = await asyncio.gather(
            *(asyncio.open_connection("127.0.0.1", port) for _ in range(min(250, count - start))),
            return_exceptions=True,
        )
        conns += [c for c in opened if not isinstance(c, BaseException)]
    return conns


async def _hold(port: int, path: str, count: int, waves: int, wait_s: float) -> tuple[list[float], int, float, int]:
    """Returns the latencies, the failures, the elapsed time, and the concurrency held (see
    ``Generator.hold``)."""
    request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()

    async def one(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> tuple[float, float]:
        async with asyncio.timeout(wait_s + 30):  # a request never answered is an error, not a hang
            sent = time.perf_counter()
            writer.write(request)
            await writer.drain()
            head = await reader.readuntil(b"\r\n\r\n")
            length = next(
                int(line.split(b":", 1)[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            )
            await reader.readexactly(length)
        if not head.startswith(b"HTTP/1.1 200"):
            raise LabError(head.split(b"\r\n", 1)[0].decode())
        return sent, time.perf_counter()

    conns = await _open(port, count)
    latencies: list[float] = []
    errors = (count - len(conns)) * waves  # a connection refused is a request lost in every wave
    held = count if conns else 0
    t0 = time.perf_counter()
    for _ in range(waves):
        results = await asyncio.gather(*(one(r, w) for r, w in conns), return_exceptions=True)
        answered = [r for r in results if isinstance(r, tuple)]
        errors += len(results) - len(answered)
        latencies += [done - sent for sent, done in answered]
        held = min(held, held_at_once(answered, wait_s))
    elapsed = time.perf_counter() - t0
    for _, writer in conns:
        writer.close()
    return latencies, errors, elapsed, held


def held_at_once(answered: Sequence[tuple[float, float]], wait_s: float) -> int:
    """How many requests a server was serving side by side: the most (sent, answered)
    intervals open at one instant, among the requests answered before a second wait could
    have passed (< 2 x ``wait_s``). A request queued behind another one's wait takes at least
    two waits; one that was answered sooner was inside the server together with the rest.
    (Little's law, sum of latencies / elapsed, would count the queue as well: a server with 5
    slots and 2000 requests sent at once "holds" 1000 by that measure.)"""
    return peak_overlap([(sent, done) for sent, done in answered if done - sent < 2 * wait_s])


def peak_overlap(intervals: Sequence[tuple[float, float]]) -> int:
    """The most intervals (start, end) open at one instant."""
    events = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    peak = level = 0
    for _, step in events:  # at equal times an end (-1) sorts first: touching is not overlapping
        level += step
        peak = max(peak, level)
    return peak


async def _websockets(url: str, count: int) -> tuple[list[float], int, int, int]:
    """Open ``count`` WebSockets at once, echo one message on each while all are open.
    Returns the round-trip times, the failures, the HTTP status of a refused handshake, and
    how many handshakes were answered with 101."""
    from websockets.asyncio.client import connect
    from websockets.exceptions import InvalidStatus

    refused = 0
    sockets = []
    errors = 0
    results = await asyncio.gather(*(connect(url, open_timeout=30) for _ in range(count)), return_exceptions=True)
    for r in results:
        if isinstance(r, InvalidStatus):
            refused = r.response.status_code
            errors += 1
        elif isinstance(r, BaseException):
            errors += 1
        else:
            sockets.append(r)

    async def echo(ws, i: int) -> float:
        sent = time.perf_counter()
        async with asyncio.timeout(30):  # an echo that never comes is an error, not a hang
            await ws.send(f"ping {i}")
            reply = await ws.recv()
        if reply != f"ping {i}":
            raise LabError("echo mismatch")
        return time.perf_counter() - sent

    rtts = await asyncio.gather(*(echo(ws, i) for i, ws in enumerate(sockets)), return_exceptions=True)
    latencies = [r for r in rtts if isinstance(r, float)]
    errors += len(rtts) - len(latencies)
    await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)
    return latencies, errors, refused, len(sockets)
