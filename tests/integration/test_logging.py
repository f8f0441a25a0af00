"""Logs under load, natively: every process writes its own file, none of it passes through
supervisord, and a rotation (logrotate, the processes reopening their files) neither loses nor
repeats a line, at more than one load."""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from tests.integration import logs
from tests.integration.conftest import ONE_CLIENT_LOAD, Stack, running_stack
from tests.integration.load import PREFIXES, SteadyLoad
from tests.support import HALVES

# Alone: wrk at full speed takes the machine, and the rotation test spaces its rotations 3 s
# apart (a minute in a deployment), which a starved machine stretches past its model.
pytestmark = [pytest.mark.integration, pytest.mark.alone]

# What supervisord captures of each program's output: only start-up messages belong there.
CONSOLES = (*(f"{half.program}-console" for half in HALVES), "nginx-console")
# Each pool's log and the prefix it serves, for the halves this project has.
POOLS = {half.program: f"/{half.prefix}" for half in HALVES}


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
    """wrk at full speed through nginx on each pool: the lines land in nginx.log and each pool's
    log (fastapi.log, flask.log), written by the processes themselves; what supervisord captures does not
    grow, and supervisord stays idle (it used about a quarter of a core when it carried them)."""
    supervisord = int((loaded.run_dir / "supervisord.pid").read_text())
    names = ("nginx", *POOLS)
    before = {name: len(logs.records(loaded.log_dir, name)) for name in names}
    consoles = sizes(loaded, CONSOLES)
    cpu_before, started = cpu_seconds(supervisord), time.monotonic()
    sent = {prefix: wrk(f"{loaded.base_url}{prefix}/health", connections=16, seconds=3) for prefix in PREFIXES}
    supervisor_share = (cpu_seconds(supervisord) - cpu_before) / (time.monotonic() - started)
    assert supervisor_share < 0.05, f"supervisord used {supervisor_share:.1%} of a core"
    assert sizes(loaded, CONSOLES) == consoles
    deadline = time.monotonic() + 10  # nginx writes its buffer at least once a second
    while True:
        grown = {name: len(logs.records(loaded.log_dir, name)) - before[name] for name in names}
        done = grown["nginx"] >= sum(sent.values())
        if (done and all(grown[pool] >= sent[prefix] for pool, prefix in POOLS.items())) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert grown["nginx"] >= sum(sent.values()), (grown, sent)
    assert all(grown[pool] >= sent[prefix] for pool, prefix in POOLS.items()), (grown, sent)


def rotate(stack: Stack) -> None:
    """What the logrotate program in supervisord.conf runs every minute, forced (-f): rotate now."""
    conf, state = stack.run_dir / "logrotate.conf", stack.run_dir / "logrotate.state"
    subprocess.run([shutil.which("logrotate") or "/usr/sbin/logrotate", "-f", "-s", str(state), str(conf)], check=True)


@pytest.mark.repeated
@pytest.mark.parametrize("clients", [4, 32])
def test_a_rotation_under_load_neither_loses_nor_repeats_a_line(loaded: Stack, clients: int):
    """Three forced rotations while requests flow: every answered request's id is in nginx's
    access log and in its pool's log exactly once, across the rotated files (plain and
    compressed) and the new ones."""
    with SteadyLoad(loaded.base_url, per_pool=clients // 2, path="/health") as load:

        def answered() -> int:
            return sum(load.ok(p) for p in PREFIXES)

        for _ in range(3):
            # Requests, and more than nginx's flush interval (1 s): logrotate leaves an empty
            # file alone (notifempty), and nginx's new file stays empty until its next flush.
            # Apart by 3 s, as rotations are (a minute, in a deployment): a worker writes what
            # it holds, into the renamed file, before the next rotation compresses that file.
            target, not_before = answered() + 50 * clients, time.monotonic() + 3
            load.wait_for(lambda t=target, n=not_before: answered() >= t and time.monotonic() >= n, "requests")
            rotate(loaded)
        target = answered() + 50 * clients  # and more after the last one
        load.wait_for(lambda: answered() >= target, "requests after the last rotation")
    assert load.failures() == {}
    # A rotation reloads nginx, which closes idle kept-alive connections: a GET sent on one
    # just then is resent, and only if nginx never read it (SteadyLoad._get).
    assert load.resends_nginx_read(loaded.log_dir) == [], load.resent
    assert len(list(loaded.log_dir.glob("nginx.log.*"))) >= 2, sorted(p.name for p in loaded.log_dir.iterdir())
    wanted = {rid for ids in load.answered.values() for rid in ids}
    for name, prefix in (("nginx", None), *POOLS.items()):
        ids = {rid for p, rids in load.answered.items() for rid in rids if prefix in (None, p)}
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
    for name in ("nginx", "nginx-error", *POOLS):
        assert str(Path(loaded.log_dir) / f"{name}.log") in conf.read_text()
    assert "logrotate" in loaded.ctl("status")
