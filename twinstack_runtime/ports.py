"""Free local ports for servers another process binds later: the test suite's stacks and the
lab's servers.

"Bind port 0, close, hand the number on" fails on a busy machine in two ways. Any outgoing
connection may take the port as its source port before the server binds it, since the kernel
draws both from ``ip_local_port_range``; and another process picking at the same moment may
get the same number. So a port comes from below that range, and every pick is written, under a
lock, in a file every process of this user reads, and held there long enough for its server to
bind it.
"""

from __future__ import annotations

import fcntl
import os
import random
import socket
import tempfile
import time
from pathlib import Path

LOWEST = 10_000  # below it: the ports services usually keep
HOLD_S = 600.0  # a port picked stays out of other picks this long (its server binds it long before)


def _ephemeral_start() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default


def _bindable(port: int) -> bool:
    """Nothing holds the port, on any address (nor a connection in TIME_WAIT)."""
    with socket.socket() as sock:
        try:
            sock.bind(("", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    """A port nothing listens on, below the ephemeral range, that no other pick holds."""
    top = _ephemeral_start()
    if top - LOWEST < 1000:
        raise RuntimeError(f"the ephemeral port range starts at {top}: no room below it for servers' ports")
    registry = Path(tempfile.gettempdir()) / f"twinstack-ports-{os.getuid()}"
    with registry.open("a+") as file:
        fcntl.flock(file, fcntl.LOCK_EX)  # released when the file closes
        file.seek(0)
        now = time.time()
        held: dict[int, float] = {}
        for entry in file.read().split():
            port, _, until = entry.partition(":")
            if port.isdigit() and until.replace(".", "", 1).isdigit() and float(until) > now:
                held[int(port)] = float(until)
        for _ in range(1000):
            port = random.randrange(LOWEST, top)
            if port not in held and _bindable(port):
                break
        else:
            raise RuntimeError(f"no free port between {LOWEST} and {top} after 1000 tries")
        held[port] = now + HOLD_S
        file.seek(0)
        file.truncate()
        file.write("\n".join(f"{p}:{until:.0f}" for p, until in held.items()))
        return port
