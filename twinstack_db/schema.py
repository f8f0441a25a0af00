"""Whether the database's schema is at the migrations' head, and a wait for it.

Where something else migrates (Kubernetes: the one migration Job a release runs), a pool must
not serve before the schema it was written for is there, and must never migrate itself: a
dozen pods starting at once would race each other's DDL. Each pool pod's init container runs
``python -m twinstack_db.schema wait`` and its workers start once the database's revisions are
the migrations' heads (deploy/kubernetes/base/patches/pool.yaml). It needs Alembic and
migrations/, which the migration's image has.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import create_engine, pool
from sqlalchemy.exc import SQLAlchemyError

from .settings import DatabaseSettings, sqlalchemy_url

CONFIG = Path("migrations") / "alembic.ini"


def _script(config: Path):
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    if not config.is_file():
        raise FileNotFoundError(f"no Alembic configuration at {config}")
    return ScriptDirectory.from_config(Config(str(config)))


def heads(config: Path = CONFIG) -> set[str]:
    """The revisions the migrations end in."""
    return set(_script(config).get_heads())


def known(config: Path = CONFIG) -> set[str]:
    """Every revision these migrations hold."""
    return {revision.revision for revision in _script(config).walk_revisions()}


def current(url: str) -> set[str]:
    """The revisions the database is at (none before its first migration)."""
    from alembic.migration import MigrationContext

    engine = create_engine(sqlalchemy_url(url), poolclass=pool.NullPool, connect_args={"connect_timeout": 3})
    try:
        with engine.connect() as conn:
            return set(MigrationContext.configure(conn).get_current_heads())
    finally:
        engine.dispose()


def wait(
    url: str,
    config: Path = CONFIG,
    timeout_s: float = 600,
    interval_s: float = 2,
    say: Callable[[str], None] = print,
) -> None:
    """Return once the database is at the migrations' heads, or ahead of them (a revision these
    migrations do not hold: a rollback's pods run on the newer schema, which migrations keep
    compatible for a release); TimeoutError after ``timeout_s``, saying what it saw last (a
    database that cannot be reached is waited for too)."""
    wanted, ours = heads(config), known(config)
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            seen = current(url)
            last = f"the database is at {sorted(seen) or 'no revision'}, the migrations end at {sorted(wanted)}"
            if seen == wanted:
                say(f"schema at head: {', '.join(sorted(wanted))}")
                return
            if seen - ours:
                say(f"schema ahead of these migrations ({', '.join(sorted(seen - ours))}): serving on it")
                return
        except SQLAlchemyError as exc:
            # The driver's first line names the host and the reason, never the password.
            last = f"the database cannot be reached: {str(exc.orig or exc).splitlines()[0]}"
        if time.monotonic() >= deadline:
            raise TimeoutError(f"the schema did not reach head in {timeout_s:g} s: {last}")
        time.sleep(interval_s)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m twinstack_db.schema")
    sub = parser.add_subparsers(dest="command", required=True)
    waiting = sub.add_parser("wait", help="Wait until TWINSTACK_DATABASE_URL is at the migrations' head.")
    waiting.add_argument("--timeout", type=float, default=600, help="Seconds before giving up (exit 1).")
    waiting.add_argument("--config", type=Path, default=CONFIG, help="Alembic's configuration.")
    args = parser.parse_args(argv)
    try:
        wait(DatabaseSettings().database_url, args.config, args.timeout)
    except (TimeoutError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
