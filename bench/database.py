"""The lab's PostgreSQL: a private cluster made by the runner as native mode makes its own
(``python -m native cluster``), on a free loopback port, migrated to head before any pool
starts and deleted with the run. Every pool the lab starts connects to it, so the claims about
database-bound work measure a real round trip.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from . import runner
from .procs import ROOT, LabError, Server, free_port

# Room for every pool the lab may run at once (each opens its connections only when used).
MAX_CONNECTIONS = 300


class PostgresServer(Server):
    """PostgreSQL as one of the lab's servers: ready when it accepts connections (pg_isready),
    run as the server's own user when the lab runs as root."""

    cluster: runner.Cluster

    def start(self, log_dir: Path, cpus: Sequence[int]) -> None:
        log_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = log_dir / f"{self.name}.log"
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                self.argv, cwd=ROOT, env=self.env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True, **self.cluster.run_as,
            )  # fmt: skip

    def wait_ready(self, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                raise LabError(f"{self.name} exited while starting:\n{self.log_tail()}")
            if subprocess.run(self.cluster.ready, capture_output=True).returncode == 0:
                return
            time.sleep(0.2)
        raise LabError(f"{self.name} not ready after {timeout_s:.0f} s:\n{self.log_tail()}")


class LabDatabase:
    """The cluster's folder, its server and the URL every pool is given."""

    def __init__(self) -> None:
        # Where the server's user may enter when the lab runs as root (its scratch is 0700).
        self.home = Path(tempfile.mkdtemp(prefix="twinstack-bench-pg-", dir="/var/tmp"))
        try:
            port = free_port()
            self.cluster = runner.cluster(self.home, port)
        except BaseException:
            self.delete()
            raise
        self.url = self.cluster.url
        argv = [*self.cluster.argv, "-c", f"max_connections={MAX_CONNECTIONS}"]
        # SIGINT: PostgreSQL's fast shutdown.
        self.server = PostgresServer("postgres", argv, port, dict(os.environ), stop_signal=2, settings={})
        self.server.cluster = self.cluster

    def prepare(self) -> None:
        """Once the server runs: the schema at the migrations' head."""
        done = subprocess.run(
            [sys.executable, "-m", "alembic", "-c", str(ROOT / "migrations" / "alembic.ini"), "upgrade", "head"],
            cwd=ROOT, env={**os.environ, "TWINSTACK_DATABASE_URL": self.url}, capture_output=True, text=True,
        )  # fmt: skip
        if done.returncode != 0:
            raise LabError(f"migrations failed: {done.stderr.strip()[-1000:]}")

    def delete(self) -> None:
        shutil.rmtree(self.home, ignore_errors=True)
