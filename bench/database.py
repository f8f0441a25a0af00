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
from pathlib import Path

from . import runner
from .procs import ROOT, LabError, Server, free_port

# Room for every pool the lab may run at once (each opens its connections only when used).
MAX_CONNECTIONS = 300


class PostgresServer(Server):
    """PostgreSQL as one of the lab's servers: ready when it accepts connections (pg_isready)."""

    cluster: runner.Cluster

    def ready(self) -> bool:
        return subprocess.run(self.cluster.ready, capture_output=True).returncode == 0


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
        # As the server's own user when the lab runs as root (PostgreSQL refuses root).
        self.server = PostgresServer(
            "postgres", argv, port, dict(os.environ), stop_signal=2, run_as=self.cluster.run_as
        )
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
