"""Ports for servers started later (twinstack_runtime/ports.py): below the ephemeral range,
never one in use, never one another pick holds, in this process or another."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time

import pytest

from twinstack_runtime import ports


@pytest.fixture(autouse=True)
def own_registry(tmp_path, monkeypatch):
    """A registry of this test's own (tempfile's folder), not the one the suite's picks use."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    return tmp_path / f"twinstack-ports-{os.getuid()}"


def test_a_pick_is_below_the_ephemeral_range_and_free():
    start = ports._ephemeral_start()
    for _ in range(20):
        port = ports.free_port()
        assert ports.LOWEST <= port < start
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))  # nothing holds it


def test_a_port_in_use_or_held_is_passed_over(monkeypatch, own_registry):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        in_use = taken.getsockname()[1]
        held = ports.LOWEST + 1
        own_registry.write_text(f"{held}:{time.time() + 60:.0f}\nnot-a-line\n")
        offered = iter([in_use, held, ports.LOWEST + 2])
        monkeypatch.setattr(ports.random, "randrange", lambda lo, hi: next(offered))
        assert ports.free_port() == ports.LOWEST + 2
    lines = dict(line.split(":") for line in own_registry.read_text().split())
    assert set(lines) == {str(held), str(ports.LOWEST + 2)}  # the bad line dropped, both held


def test_a_hold_ends_after_its_time(monkeypatch, own_registry):
    expired = ports.LOWEST + 5
    own_registry.write_text(f"{expired}:{time.time() - 1:.0f}")
    monkeypatch.setattr(ports.random, "randrange", lambda lo, hi: expired)
    assert ports.free_port() == expired


def test_picks_made_at_once_by_several_processes_never_meet(tmp_path):
    pick = "from twinstack_runtime.ports import free_port; print(*(free_port() for _ in range(100)))"
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    procs = [
        subprocess.Popen([sys.executable, "-c", pick], stdout=subprocess.PIPE, text=True, env=env) for _ in range(4)
    ]
    picked = [int(p) for proc in procs for p in proc.communicate(timeout=60)[0].split()]
    assert len(picked) == 400 and len(set(picked)) == 400


def test_no_room_below_the_ephemeral_range_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(ports, "_ephemeral_start", lambda: ports.LOWEST + 10)
    with pytest.raises(RuntimeError, match="no room below it"):
        ports.free_port()
