"""``python -m twinstack_db.schema wait``: what each pool pod runs before its workers start on
Kubernetes, where one Job migrates. Against the tests' real PostgreSQL."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

from tests.db.test_migrations import alembic
from tests.support import ROOT, free_port
from twinstack_db import schema


def run_wait(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TWINSTACK_DATABASE_URL": url}
    return subprocess.run(
        [sys.executable, "-m", "twinstack_db.schema", "wait", *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_a_migrated_database_is_at_head_and_the_wait_returns_at_once(database_url: str):
    assert schema.current(database_url) == schema.heads(ROOT / schema.CONFIG)
    done = run_wait(database_url, "--timeout", "5")
    assert done.returncode == 0, done.stderr
    assert "schema at head" in done.stdout


def test_the_wait_gives_up_on_a_database_never_migrated_and_says_where_it_is(empty_database_url: str):
    done = run_wait(empty_database_url, "--timeout", "1")
    assert done.returncode == 1
    assert "did not reach head in 1 s" in done.stderr and "no revision" in done.stderr


def test_the_wait_ends_when_the_migration_lands(postgres_url: str):
    from tests.conftest import other_database

    url = other_database(postgres_url, "migrating")
    said: list[str] = []
    waiter = threading.Thread(target=schema.wait, args=(url, ROOT / schema.CONFIG, 60, 0.2, said.append))
    waiter.start()
    time.sleep(1)
    assert waiter.is_alive() and not said  # nothing to serve yet
    assert alembic(url, "upgrade", "head").returncode == 0
    waiter.join(30)
    assert not waiter.is_alive() and said and said[0].startswith("schema at head")


def test_an_unreachable_database_is_waited_for_then_named_without_its_password():
    url = f"postgresql://twinstack:s3cret-word@127.0.0.1:{free_port()}/twinstack"
    done = run_wait(url, "--timeout", "1")
    assert done.returncode == 1
    assert "cannot be reached" in done.stderr and "s3cret-word" not in done.stderr + done.stdout


def test_a_database_ahead_of_these_migrations_is_served_on_as_after_a_rollback(postgres_url: str):
    """A rollback's pods carry the previous migrations; the database is at a newer revision
    they do not know: they wait for nothing and serve on it."""
    import psycopg

    from tests.conftest import other_database

    url = other_database(postgres_url, "ahead")
    assert alembic(url, "upgrade", "head").returncode == 0
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("UPDATE alembic_version SET version_num = 'f00dcafe0099'")
    done = run_wait(url, "--timeout", "5")
    assert done.returncode == 0, done.stderr
    assert "schema ahead of these migrations (f00dcafe0099)" in done.stdout
