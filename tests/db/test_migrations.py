"""The schema is Alembic's: an empty database goes up to head and back down to base, and head
is exactly what the models declare (nothing the services rely on is missing from a migration)."""

from __future__ import annotations

import os
import subprocess
import sys

import psycopg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine

from tests.support import ROOT
from twinstack_db.models import Base
from twinstack_db.settings import sqlalchemy_url


def alembic(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "alembic", "-c", str(ROOT / "migrations/alembic.ini"), *args],
        cwd=ROOT, env={**os.environ, "TWINSTACK_DATABASE_URL": url}, capture_output=True, text=True,
    )  # fmt: skip


def tables(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'").fetchall()
    return {name for (name,) in rows}


def test_an_empty_database_goes_to_head_and_back_to_base(empty_database_url: str):
    postgres_url = empty_database_url
    assert tables(postgres_url) == set()
    up = alembic(postgres_url, "upgrade", "head")
    assert up.returncode == 0, up.stderr
    assert tables(postgres_url) == {"alembic_version", *Base.metadata.tables}
    # Head is what the models say: autogenerate finds nothing to add, drop or change.
    engine = create_engine(sqlalchemy_url(postgres_url))
    try:
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)
    finally:
        engine.dispose()
    assert diff == []
    again = alembic(postgres_url, "upgrade", "head")  # twice is harmless: `make up` runs it each time
    assert again.returncode == 0, again.stderr
    down = alembic(postgres_url, "downgrade", "base")
    assert down.returncode == 0, down.stderr
    assert tables(postgres_url) == {"alembic_version"}


@pytest.mark.parametrize("url", ["", "mysql://x@y/z", "sqlite:///x.db"])
def test_only_a_postgresql_url_is_taken(url: str):
    with pytest.raises(ValueError, match="postgresql://"):
        sqlalchemy_url(url)
