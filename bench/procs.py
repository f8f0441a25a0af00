"""The servers the lab measures, as local processes on free loopback ports, and what they use.

Each server runs in its own process group (so a stop takes its workers too) with its log in
the report's ``logs/`` folder. ``Sampler`` watches the process trees of the servers under
test while a load runs: CPU seconds (user + system, every worker included) and the peak of
resident memory (RSS) and of proportional memory (PSS, which splits pages shared after fork).
"""

from __future__ import annotations

import contextlib
import gzip
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from .records import CpuLayoutRecord, Settings

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


class LabError(RuntimeError):
    pass


def argv(program: str, *args: object) -> list[str]:
    """A command line for one of the virtualenv's programs."""
    return [str(BIN / program), *(str(a) for a in args)]


@dataclass(frozen=True)
class CpuLayout:
    """Which CPUs the servers and the load generator may use. With four or more CPUs they get
    separate ones (a quarter for the generator), so neither steals the other's cycles; with
    fewer, both share all of them and the generator's CPU is recorded instead."""

    servers: tuple[int, ...]
    generator: tuple[int, ...]

    @property
    def pinned(self) -> bool:
        return set(self.servers).isdisjoint(self.generator)

    @classmethod
    def detect(cls) -> CpuLayout:
        cpus = tuple(sorted(os.sched_getaffinity(0)))
        if len(cpus) < 4:
            return cls(servers=cpus, generator=cpus)
        split = max(1, len(cpus) // 4)
        return cls(servers=cpus[:-split], generator=cpus[-split:])

    def record(self) -> CpuLayoutRecord:
        return CpuLayoutRecord(servers=list(self.servers), generator=list(self.generator), pinned=self.pinned)


def _pinned(cpus: Sequence[int]):
    def pin() -> None:
        os.sched_setaffinity(0, cpus)

    return pin


HELD_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextlib.contextmanager
def _signals_held() -> Iterator[None]:
    """SIGINT and SIGTERM held back for the block, then delivered to the handlers they had (the
    lab's raise KeyboardInterrupt). Python runs signal handlers in the main thread, whichever
    thread the signal reached, so the handlers are swapped, not the thread's mask; elsewhere
    than the main thread there is nothing to swap."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    arrived: list[int] = []
    previous = {sig: signal.signal(sig, lambda signum, frame: arrived.append(signum)) for sig in HELD_SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for sig in dict.fromkeys(arrived):
            signal.raise_signal(sig)


@dataclass
class Server:
    """One server under test: a command, its environment, the port it answers on."""

    name: str
    argv: list[str]
    port: int
    env: dict[str, str]
    health_path: str = "/health"
    stop_signal: int = signal.SIGTERM
    settings: Settings = field(default_factory=dict)
    run_as: dict = field(default_factory=dict)
    """subprocess's user/group arguments, for a server that must not run as root (PostgreSQL)."""
    proc: subprocess.Popen | None = field(default=None, repr=False)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, log_dir: Path, cpus: Sequence[int]) -> None:
        """Start its process. SIGINT and SIGTERM wait until the process is recorded: a stop that
        arrived while Popen ran (after the fork, before it returned) would otherwise leave a
        server running that no one knows to stop."""
        log_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = log_dir / f"{self.name}.log"
        with open(self.log_path, "ab") as log, _signals_held():
            self.proc = subprocess.Popen(
                self.argv,
                cwd=ROOT,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_pinned(cpus),
                **self.run_as,
            )

    def ready(self) -> bool:
        """Whether it serves yet: its health path answers 200."""
        try:
            with urllib.request.urlopen(self.base_url + self.health_path, timeout=2) as resp:
                return resp.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def wait_ready(self, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                raise LabError(f"{self.name} exited while starting:\n{self.log_tail()}")
            if self.ready():
                return
            time.sleep(0.2)
        raise LabError(f"{self.name} not ready after {timeout_s:.0f} s:\n{self.log_tail()}")

    def log_tail(self, chars: int = 2000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except (AttributeError, OSError):
            return ""

    def processes(self) -> list[psutil.Process]:
        if self.proc is None:
            return []
        try:
            root = psutil.Process(self.proc.pid)
            return [root, *root.children(recursive=True)]
        except psutil.Error:
            return []

    def stop(self, timeout_s: float = 15.0) -> None:
        if self.proc is None:
            return
        pgid = self.proc.pid
        if self.proc.poll() is None:
            try:
                os.killpg(pgid, self.stop_signal)
                self.proc.wait(timeout_s)
            except (subprocess.TimeoutExpired, ProcessLookupError):
                pass
        # Whatever is left of the group, even when the leader is gone: a master that died
        # can leave workers behind, still holding the port.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
        self.proc.wait()


class Servers:
    """Starts servers together (they boot in parallel), stops each exactly once."""

    def __init__(self, log_dir: Path, layout: CpuLayout) -> None:
        self.log_dir = log_dir
        self.layout = layout
        self.running: dict[str, Server] = {}

    def start(self, *servers: Server) -> None:
        """Start the servers not running yet; one that died since it started is started again
        (what is left of its process group is killed first)."""
        fresh = [server for server in servers if not self.alive(server)]
        errors = self.start_each(*servers)
        if errors:
            self.stop(*fresh)  # none of them is left running behind the error
            raise next(iter(errors.values()))

    @contextlib.contextmanager
    def started(self, *servers: Server) -> Iterator[None]:
        """Servers for one experiment: started together, stopped when it ends, however it ends."""
        try:
            self.start(*servers)
            yield
        finally:
            self.stop(*servers)

    def alive(self, server: Server) -> bool:
        """Started by this lab and still running (not merely started once)."""
        return server.name in self.running and server.proc is not None and server.proc.poll() is None

    def _not_running(self, servers: Sequence[Server]) -> list[Server]:
        fresh = []
        for server in servers:
            if self.alive(server):
                continue
            self.stop(server)  # what is left of one that died
            fresh.append(server)
        return fresh

    def start_each(self, *servers: Server) -> dict[str, LabError]:
        """Start the servers not running yet, together (they boot in parallel); one that fails
        is stopped and its error returned by name while the others run on."""
        errors = {}
        servers = tuple(self._not_running(servers))
        for server in servers:
            # Recorded before its process starts: a stop from here on (an error, Ctrl-C,
            # SIGTERM) stops it too.
            self.running[server.name] = server
            try:
                server.start(self.log_dir, self.layout.servers)
            except OSError as exc:  # its program is missing or cannot run
                self.running.pop(server.name)
                errors[server.name] = LabError(f"{server.name} could not start: {exc}")
        for server in servers:
            if server.name in errors:
                continue
            try:
                server.wait_ready()
            except LabError as exc:
                errors[server.name] = exc
                self.stop(server)
        return errors

    def stop(self, *servers: Server) -> None:
        for server in servers:
            if self.running.pop(server.name, None) is not None:
                server.stop()

    def stop_all(self) -> None:
        self.stop(*list(self.running.values()))


class Sampler:
    """CPU seconds and peak memory of some servers' process trees, sampled in a thread."""

    def __init__(self, servers: Sequence[Server], interval_s: float = 0.2) -> None:
        self.servers = servers
        self.interval_s = interval_s
        self._first: dict[int, float] = {}
        self._last: dict[int, float] = {}
        self._initial: set[int] = set()
        self._owner: dict[int, str] = {}  # pid -> the server it belongs to
        self.peak_rss = 0
        self.peak_pss = 0
        self.idle_pss = 0  # before the load: what the servers hold doing nothing
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> None:
        rss = pss = 0
        for server in self.servers:
            for proc in server.processes():
                try:
                    with proc.oneshot():
                        times = proc.cpu_times()
                        mem = proc.memory_full_info()
                except psutil.Error:
                    continue
                total = times.user + times.system
                self._owner[proc.pid] = server.name
                self._first.setdefault(proc.pid, total)
                self._last[proc.pid] = total
                rss += mem.rss
                pss += getattr(mem, "pss", mem.rss)
        self.peak_rss = max(self.peak_rss, rss)
        self.peak_pss = max(self.peak_pss, pss)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._sample()

    def __enter__(self) -> Sampler:
        self._sample()
        self.idle_pss = self.peak_pss
        self._initial = set(self._first)
        self._box_start = _busy_cpu_seconds()
        self._wall_start = time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()
        self.wall_s = time.monotonic() - self._wall_start
        self.box_busy_s = _busy_cpu_seconds() - self._box_start

    def _used(self, pid: int) -> float:
        # A process that appeared during the run (a respawned worker) counts from zero.
        return self._last[pid] - (self._first[pid] if pid in self._initial else 0.0)

    @property
    def cpu_s(self) -> float:
        return sum(self._used(pid) for pid in self._last)

    @property
    def cpu_s_by_server(self) -> dict[str, float]:
        """CPU seconds of each server's process tree: which process a run kept busy."""
        out: dict[str, float] = {}
        for pid in self._last:
            out[self._owner[pid]] = out.get(self._owner[pid], 0.0) + self._used(pid)
        return out


def compress_logs(folder: Path, over_bytes: int = 1 << 20) -> list[Path]:
    """gzip the servers' logs larger than ``over_bytes`` (nginx's JSON access log of a full run
    is ~150 MB of lines alike); the small ones stay plain text to read."""
    done = []
    for log in sorted(folder.glob("*.log")):
        if log.stat().st_size > over_bytes:
            target = log.with_name(log.name + ".gz")
            with log.open("rb") as src, gzip.open(target, "wb", compresslevel=6) as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
            log.unlink()
            done.append(target)
    return done


# The CPUs the lab may use, read once at import: a thread that drives a load is pinned to the
# generator's CPUs meanwhile, and its own affinity would then hide the servers' CPUs.
USABLE_CPUS = frozenset(os.sched_getaffinity(0))


def _busy_cpu_seconds() -> float:
    """Busy seconds of the CPUs the lab may use: in a container with a cpuset, those CPUs, not
    the host's (the utilisation is divided by the usable CPUs)."""
    return sum(
        t.user + t.nice + t.system + t.irq + t.softirq + getattr(t, "steal", 0.0)
        for cpu, t in enumerate(psutil.cpu_times(percpu=True))
        if cpu in USABLE_CPUS
    )


def _cpu_seconds(servers: Sequence[Server]) -> float:
    total = 0.0
    for server in servers:
        for proc in server.processes():
            with contextlib.suppress(psutil.Error):
                times = proc.cpu_times()
                total += times.user + times.system
    return total


def settle(servers: Sequence[Server], timeout_s: float = 30.0) -> tuple[float, bool]:
    """Wait until the servers are idle again; returns how long that took, and whether they got
    there before ``timeout_s`` (a run that starts on a busy server is marked, not trusted).

    A load generator that stops leaves requests behind: sent, queued in the listen backlog,
    their clients gone. A sync worker still accepts and serves every one of them (the request
    is already in the socket), so the next run would queue behind the previous run's ghosts.
    Idle means: each server's readiness probe (``Server.ready``: a health check, or a connection
    for a server that speaks no HTTP) answers within 50 ms and the processes use < 5 % of a core."""
    start = time.monotonic()
    while time.monotonic() - start < timeout_s:
        before, t0 = _cpu_seconds(servers), time.monotonic()
        quick = True
        for server in servers:
            sent = time.monotonic()
            quick = server.ready() and quick and time.monotonic() - sent < 0.05
        time.sleep(max(0.0, 0.1 - (time.monotonic() - t0)))
        busy = (_cpu_seconds(servers) - before) / (time.monotonic() - t0)
        if quick and busy < 0.05:
            return time.monotonic() - start, True
    return time.monotonic() - start, False
