"""The lab's PostgreSQL: a private cluster made by the runner as native mode makes its own
(``python -m native cluster``), on a free loopback port, migrated to head before any pool
starts and deleted with the run. Every pool the lab starts connects to it, so the claims about
database-bound work measure a real round trip.

Beside it, what claim 13 needs: a table of orders seeded with ids spread at random
(``seed``), the ``pgbench`` script that reads them the way ``GET /orders/{id}`` does (the
database's own limit), a pgbouncer in transaction pooling in front of the server
(``Pgbouncer``, Debian's package), and ``Activity``, which counts the server connections a
run actually used (``pg_stat_activity``).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
from sqlalchemy import literal_column, select
from sqlalchemy.dialects import postgresql

from twinstack_db.orders import orders
from twinstack_runtime.ports import free_port

from . import runner
from .procs import ROOT, LabError, Server

# Room for every pool the lab may run at once (each opens its connections only when used).
MAX_CONNECTIONS = 300
# Claim 13's table: at least 100 000 orders, so an indexed read is a real B-tree descent.
SEED_ROWS = 100_000
# Order i's id is the UUID of md5(SEED_PREFIX || i): spread at random over the index like
# uuid4 ids, and computable on both sides (the lab's list of ids for wrk, pgbench's script).
SEED_PREFIX = "twinstack-lab-"
PGBOUNCER = "/usr/sbin/pgbouncer"


def seed_id(i: int) -> uuid.UUID:
    return uuid.UUID(hashlib.md5(f"{SEED_PREFIX}{i}".encode()).hexdigest())


def pgbench_script(rows: int) -> str:
    """One transaction of pgbench: the statement ``GET /orders/{id}`` runs (twinstack_db/orders.py's
    ``get``, compiled from the same table), for a random one of the seeded orders."""
    wanted = literal_column(f"md5('{SEED_PREFIX}' || :n)::uuid")
    statement = select(orders).where(orders.c.id == wanted).compile(dialect=postgresql.dialect())
    return f"\\set n random(1, {rows})\n{statement};\n"


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

    def seed(self, rows: int, ids: Path) -> None:
        """``rows`` orders with the ids ``seed_id`` gives (added once: a second call finds them),
        the table analysed, and every id written to ``ids``, one a line (wrk's list)."""
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(
                "INSERT INTO orders (id, sku, quantity, unit_price_cents, total_cents, customer_email)"
                " SELECT md5(%(prefix)s || i)::uuid, 'SKU-' || (i %% 1000), 1 + i %% 5, 100 + i %% 900,"
                " (1 + i %% 5) * (100 + i %% 900), 'lab' || i || '@example.com'"
                " FROM generate_series(1, %(rows)s) AS i ON CONFLICT (id) DO NOTHING",
                {"prefix": SEED_PREFIX, "rows": rows},
            )
            conn.execute("ANALYZE orders")
        ids.write_text("".join(f"{seed_id(i)}\n" for i in range(1, rows + 1)))

    def pgbench(self) -> str:
        """pgbench from the cluster's own binaries (it ships with PostgreSQL)."""
        return str(Path(self.cluster.argv[0]).with_name("pgbench"))

    def delete(self) -> None:
        shutil.rmtree(self.home, ignore_errors=True)


class PortServer(Server):
    """A server that speaks no HTTP: ready when its port accepts a connection."""

    def ready(self) -> bool:
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
            return True
        except OSError:
            return False


class Pgbouncer:
    """pgbouncer in transaction pooling in front of the lab's PostgreSQL: clients take a server
    connection only for a transaction, and the server never sees more than ``pool_size``
    connections for the database, however many clients connect."""

    def __init__(self, database: LabDatabase, pool_size: int) -> None:
        if not Path(PGBOUNCER).exists():
            raise LabError(
                "pgbouncer is not installed: claim 13 runs through it (Debian/Ubuntu: sudo apt-get install pgbouncer; "
                "`make bench` installs it when run as root)."
            )
        server = urlsplit(database.url)
        folder = database.home / "pgbouncer"
        folder.mkdir(exist_ok=True)
        port = free_port()
        (folder / "userlist.txt").write_text(f'"{server.username}" "{server.password}"\n')
        (folder / "pgbouncer.ini").write_text(
            "[databases]\n"
            f"postgres = host=127.0.0.1 port={server.port} dbname=postgres\n"
            "[pgbouncer]\n"
            f"listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n"
            f"auth_type = scram-sha-256\nauth_file = {folder / 'userlist.txt'}\n"
            f"pool_mode = transaction\ndefault_pool_size = {pool_size}\nmin_pool_size = 0\nreserve_pool_size = 0\n"
            "max_client_conn = 2000\n"
            # psycopg sends the statement timeout as a startup option, which pgbouncer cannot
            # forward in transaction pooling; behind a pooler it belongs on the role instead.
            "ignore_startup_parameters = extra_float_digits,options\n"
            f"logfile = {folder / 'pgbouncer.log'}\nlog_connections = 0\nlog_disconnections = 0\n"
        )
        run_as = database.cluster.run_as
        if run_as:
            for path in (folder, *folder.iterdir()):
                os.chown(path, run_as["user"], run_as["group"])
        self.pool_size = pool_size
        self.url = server._replace(netloc=f"{server.username}:{server.password}@127.0.0.1:{port}").geturl()
        self.server = PortServer(
            "pgbouncer", [PGBOUNCER, str(folder / "pgbouncer.ini")], port, dict(os.environ), run_as=run_as
        )


class Activity:
    """The server connections a run used, from ``pg_stat_activity`` sampled every
    ``interval_s``: how many distinct ones ran a statement while it was open (``used``: running
    one at a sample, or gone idle since it opened, which a statement of microseconds needs to be
    counted), and the most seen running at once (``peak``). Its own connection is left out, and
    so is one that never ran a statement: pgbench opens one such before its clients, to read the
    server's version, and closes it again."""

    QUERY = (
        "SELECT pid, state <> 'idle' FROM pg_stat_activity WHERE backend_type = 'client backend'"
        " AND pid <> pg_backend_pid() AND query_start IS NOT NULL"
        " AND (state <> 'idle' OR state_change >= %(since)s)"
    )

    def __init__(self, url: str, interval_s: float = 0.02) -> None:
        self.url = url
        self.interval_s = interval_s
        self.seen: set[int] = set()
        self.peak = 0
        self.error: psycopg.Error | None = None
        self._started = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            with psycopg.connect(self.url, autocommit=True) as conn:
                since = conn.execute("SELECT clock_timestamp()").fetchone()[0]
                self._started.set()
                while not self._stop.wait(self.interval_s):
                    rows = conn.execute(self.QUERY, {"since": since}).fetchall()
                    self.seen |= {pid for pid, _ in rows}
                    self.peak = max(self.peak, sum(1 for _, running in rows if running))
        except psycopg.Error as exc:  # said when the run ends: a count it could not make is not zero
            self.error = exc
        finally:
            self._started.set()

    @property
    def used(self) -> int:
        return len(self.seen)

    def __enter__(self) -> Activity:
        self._thread.start()
        self._started.wait(10)  # counts from here: what the run does, not what came before
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        if self.error is not None and exc[0] is None:
            raise LabError(f"pg_stat_activity could not be sampled: {self.error}")
