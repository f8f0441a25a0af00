"""Logs under load, natively: every process writes its own file, none of it passes through
supervisord, and a rotation (logrotate, the processes reopening their files) neither loses nor
repeats a line, at more than one load."""

from __future__ import annotations

import re
import shutil
import subprocess
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import psutil
import pytest

from tests.integration import logs
from tests.integration.conftest import ONE_CLIENT_LOAD, Stack, running_stack

pytestmark = pytest.mark.integration

# What supervisord captures of each program's output: only start-up messages belong there.
CONSOLES = ("fastapi-console", "flask-console", "nginx-console")


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory, nginx_bin: str) -> Iterator[Stack]:
    limits = dict(TWINSTACK_CLIENT_MAX_CONNS="65535", TWINSTACK_SYNC_MAX_INFLIGHT_PER_CLIENT="100")
    with running_stack(tmp_path_factory.mktemp("logging"), **ONE_CLIENT_LOAD, **limits) as own:
        yield own


def sizes(stack: Stack, names: tuple[str, ...]) -> dict[str, int]:
    return {name: (stack.log_dir / f"{name}.log").stat().st_size for name in names}


def cpu_seconds(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


def wrk(url: str, connections: int, seconds: int) -> int:
    """Requests wrk completed against a loopback URL (bounded by time)."""
    out = subprocess.run(
        [shutil.which("wrk") or "wrk", "-t2", f"-c{connections}", f"-d{seconds}s", url],
        capture_output=True, text=True, check=True, timeout=seconds + 30,
    ).stdout  # fmt: skip
    return int(re.search(r"(\d+) requests in", out).group(1))


def test_under_full_load_no_log_line_passes_through_the_supervisor(loaded: Stack):
    """wrk at full speed through nginx on both pools: the lines land in nginx.log, fastapi.log
    and flask.log, written by the processes themselves; what supervisord captures does not
    grow, and supervisord stays idle (it used about a quarter of a core when it carried them)."""
    supervisord = int((loaded.run_dir / "supervisord.pid").read_text())
    before = {name: len(logs.records(loaded.log_dir, name)) for name in logs.JSON_LOGS}
    consoles = sizes(loaded, CONSOLES)
    cpu_before, started = cpu_seconds(supervisord), time.monotonic()
    sent = {
        prefix: wrk(f"{loaded.base_url}{prefix}/health", connections=16, seconds=3) for prefix in ("/async", "/sync")
    }
    supervisor_share = (cpu_seconds(supervisord) - cpu_before) / (time.monotonic() - started)
    assert supervisor_share < 0.05, f"supervisord used {supervisor_share:.1%} of a core"
    assert sizes(loaded, CONSOLES) == consoles
    deadline = time.monotonic() + 10  # nginx writes its buffer at least once a second
    while True:
        grown = {name: len(logs.records(loaded.log_dir, name)) - before[name] for name in logs.JSON_LOGS}
        done = grown["nginx"] >= sum(sent.values()) and grown["fastapi"] >= sent["/async"]
        if (done and grown["flask"] >= sent["/sync"]) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert grown["nginx"] >= sum(sent.values()), (grown, sent)
    assert grown["fastapi"] >= sent["/async"] and grown["flask"] >= sent["/sync"], (grown, sent)


class TracedLoad:
    """``clients`` threads sending GETs with request ids of their own, through nginx, to both
    pools, until stopped (at most ``max_s``): every id sent and answered is kept.

    A rotation reloads nginx, and a reloading nginx closes its idle kept-alive connections; a
    request sent on one just as it closes gets no response, and is sent again on a new one, with
    the same id (RFC 9112 9.3.1, as any HTTP client does). nginx never read it, so the id must
    still be logged exactly once."""

    def __init__(self, base_url: str, clients: int, max_s: float = 30) -> None:
        self.base_url, self.clients, self.max_s = base_url, clients, max_s
        self.answered: list[tuple[str, str]] = []  # (prefix, request id)
        self.failures: list[str] = []
        self.resent = 0
        self.stop = threading.Event()
        self.lock = threading.Lock()

    def _client(self, n: int) -> None:
        prefix = ("/async", "/sync")[n % 2]
        deadline = time.monotonic() + self.max_s
        with httpx.Client(base_url=self.base_url, timeout=30) as client:
            while not self.stop.is_set() and time.monotonic() < deadline:
                rid = f"rot-{uuid.uuid4().hex}"
                try:
                    r = client.get(f"{prefix}/health", headers={"X-Request-ID": rid})
                except (httpx.RemoteProtocolError, httpx.ReadError):  # closed before any response: resend once
                    with self.lock:
                        self.resent += 1
                    r = client.get(f"{prefix}/health", headers={"X-Request-ID": rid})
                with self.lock:
                    (self.answered.append((prefix, rid)) if r.status_code == 200 else self.failures.append(rid))

    def __enter__(self) -> TracedLoad:
        self.pool = ThreadPoolExecutor(self.clients)
        self.futures = [self.pool.submit(self._client, n) for n in range(self.clients)]
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for future in self.futures:
            future.result()
        self.pool.shutdown()


def rotate(stack: Stack) -> None:
    """What the logrotate program in supervisord.conf runs every minute, forced (-f): rotate now."""
    conf, state = stack.run_dir / "logrotate.conf", stack.run_dir / "logrotate.state"
    subprocess.run([shutil.which("logrotate") or "/usr/sbin/logrotate", "-f", "-s", str(state), str(conf)], check=True)


@pytest.mark.parametrize("clients", [4, 32])
def test_a_rotation_under_load_neither_loses_nor_repeats_a_line(loaded: Stack, clients: int):
    """Three forced rotations while requests flow: every answered request's id is in nginx's
    access log and in its pool's log exactly once, across the rotated files (plain and
    compressed) and the new ones."""
    with TracedLoad(loaded.base_url, clients) as load:
        for _ in range(3):
            # Requests, and more than nginx's flush interval (1 s): logrotate leaves an empty
            # file alone (notifempty), and nginx's new file stays empty until its next flush.
            # Apart by 3 s, as rotations are (a minute, in a deployment): a worker writes what
            # it holds, into the renamed file, before the next rotation compresses that file.
            target, not_before = len(load.answered) + 50 * clients, time.monotonic() + 3
            while (len(load.answered) < target or time.monotonic() < not_before) and not load.stop.is_set():
                time.sleep(0.05)
            rotate(loaded)
        target = len(load.answered) + 50 * clients  # and more after the last one
        while len(load.answered) < target:
            time.sleep(0.05)
    assert not load.failures
    assert len(list(loaded.log_dir.glob("nginx.log.*"))) >= 2, sorted(p.name for p in loaded.log_dir.iterdir())
    wanted = {rid for _, rid in load.answered}
    for name, prefix in (("nginx", None), ("fastapi", "/async"), ("flask", "/sync")):
        ids = {rid for p, rid in load.answered if prefix in (None, p)}
        deadline = time.monotonic() + 10
        while True:
            records = logs.records(loaded.log_dir, name)
            seen = Counter(r.get("request_id") for r in records if r.get("request_id") in wanted)
            if set(seen) >= ids or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert set(seen) == ids, f"{name}: {len(ids - set(seen))} of {len(ids)} lines missing"
        repeated = [rid for rid, n in seen.items() if n > 1]
        assert not repeated, f"{name}: {len(repeated)} lines written twice"


def test_the_rendered_logrotate_config_is_what_logrotate_accepts(loaded: Stack):
    """logrotate's own check (-d: read the config, rotate nothing) passes on the rendered file."""
    conf, state = loaded.run_dir / "logrotate.conf", loaded.run_dir / "check.state"
    binary = shutil.which("logrotate") or "/usr/sbin/logrotate"
    result = subprocess.run([binary, "-d", "-s", str(state), str(conf)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert not [line for line in result.stderr.splitlines() if line.startswith("error")], result.stderr
    for name in ("nginx", "nginx-error", "fastapi", "flask"):
        assert str(Path(loaded.log_dir) / f"{name}.log") in conf.read_text()
    assert "logrotate" in loaded.ctl("status")
