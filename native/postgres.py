"""Native mode's PostgreSQL: a private cluster of Debian's PostgreSQL, run by supervisord
(native/programs/postgres.conf) on a port of its own, started first and stopped last.

``python -m native up`` makes the cluster the first time (``initdb``), starts supervisord,
waits until the server accepts connections, creates the database, and applies the migrations
(``alembic upgrade head``) before it starts the pools: once, never in a worker.

PostgreSQL refuses to run as root. Started as root, the server runs as Debian's ``postgres``
user, and its data lives where that user may enter: a folder only root and it may write,
under /var/lib/twinstack/ (one per stack, like the web root's copy), kept across restarts.
Started as anyone else, the data lives in run/postgres/.
"""

from __future__ import annotations

import hashlib
import os
import pwd
import secrets
import shutil
import subprocess
import time
from pathlib import Path

DATA_ROOT = Path("/var/lib/twinstack")
DATABASE = "twinstack"
ROLE = "twinstack"


class PostgresError(RuntimeError):
    pass


def bin_dir(configured: str | None = None) -> Path | None:
    """Where initdb, postgres and pg_isready are: as configured, on PATH, or Debian's newest
    /usr/lib/postgresql/<major>/bin."""
    if configured:
        return Path(configured)
    if found := shutil.which("pg_ctl"):
        return Path(found).resolve().parent
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"), key=lambda p: int(p.parts[-3]))
    return versions[-1].parent if versions else None


def server_user() -> str:
    """The user the server runs as: postgres when started as root, else the caller."""
    if os.geteuid() == 0:
        try:
            return pwd.getpwnam("postgres").pw_name
        except KeyError:
            raise PostgresError("no postgres user: install PostgreSQL from the OS packages") from None
    return pwd.getpwuid(os.geteuid()).pw_name


def data_dir(run_dir: Path) -> Path:
    if os.geteuid() != 0:
        return run_dir.resolve() / "postgres" / "data"
    digest = hashlib.sha256(str(run_dir.resolve()).encode()).hexdigest()[:16]
    return DATA_ROOT / digest / "data"


def password(run_dir: Path, given: str | None) -> str:
    """The role's password: TWINSTACK_DB_PASSWORD, else one made once and kept in
    run/postgres.password (readable by its owner only)."""
    if given:
        return given
    path = run_dir / "postgres.password"
    if path.exists():
        return path.read_text().strip()
    run_dir.mkdir(parents=True, exist_ok=True)
    made = secrets.token_urlsafe(24)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(made + "\n")
    return made


def as_server_user() -> dict:
    """subprocess arguments that run a command as the server's user (when root)."""
    if os.geteuid() != 0:
        return {}
    entry = pwd.getpwnam(server_user())
    return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}


def ensure_cluster(binaries: Path, data: Path, secret: str) -> bool:
    """initdb the cluster if it is not there; True when it was made now. The role is a
    superuser of its own cluster; password authentication on 127.0.0.1 only, no socket
    clients but the server's own user."""
    if (data / "PG_VERSION").exists():
        return False
    data.mkdir(parents=True, exist_ok=True)
    data.chmod(0o700)
    if os.geteuid() == 0:
        entry = pwd.getpwnam(server_user())
        for folder in (data.parent, data):
            os.chown(folder, entry.pw_uid, entry.pw_gid)
        data.parent.chmod(0o700)
    pwfile = data.parent / ".initdb-password"
    fd = os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(secret + "\n")
    if os.geteuid() == 0:
        os.chown(pwfile, pwd.getpwnam(server_user()).pw_uid, -1)
    try:
        result = subprocess.run(
            [str(binaries / "initdb"), "-D", str(data), "-U", ROLE, f"--pwfile={pwfile}", "-E", "UTF8",
             "--locale=C.UTF-8", "--auth-local=peer", "--auth-host=scram-sha-256"],
            capture_output=True, text=True, **as_server_user(),
        )  # fmt: skip
    finally:
        pwfile.unlink(missing_ok=True)
    if result.returncode != 0:
        raise PostgresError(f"initdb failed:\n{result.stderr.strip()}")
    return True


def wait_ready(binaries: Path, port: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        result = subprocess.run(
            [str(binaries / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(port)], capture_output=True
        )
        if result.returncode == 0:
            return
        if time.monotonic() > deadline:
            raise PostgresError(f"PostgreSQL did not accept connections on 127.0.0.1:{port} in {timeout_s:.0f} s")
        time.sleep(0.2)


def wait_connectable(url: str, timeout_s: float) -> None:
    """An external database: wait until a connection succeeds (no pg_isready needed here)."""
    import psycopg

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            psycopg.connect(url, connect_timeout=5).close()
            return
        except psycopg.Error as exc:
            if time.monotonic() > deadline:
                host = url.rpartition("@")[2]  # no password in the message
                raise PostgresError(f"cannot connect to the external database at {host}: {exc}") from None
        time.sleep(0.5)


def max_connections(url: str, timeout_s: float) -> int:
    """The server's own max_connections (an external database: the budget's real limit)."""
    import psycopg

    wait_connectable(url, timeout_s)
    with psycopg.connect(url, connect_timeout=5) as conn:
        return int(conn.execute("SHOW max_connections").fetchone()[0])


def ensure_database(url: str) -> None:
    """Create the application's database on first start (initdb makes only ``postgres``)."""
    import psycopg
    from psycopg import sql

    maintenance = url.rsplit("/", 1)[0] + "/postgres"
    try:
        with psycopg.connect(maintenance, autocommit=True, connect_timeout=10) as conn:
            if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,)).fetchone() is None:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DATABASE)))
    except psycopg.Error as exc:
        raise PostgresError(f"cannot create the database: {exc}") from None
