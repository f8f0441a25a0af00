"""The engines' connection settings, on the tests' PostgreSQL: server-side prepared statements
on by default, off with TWINSTACK_DB_PREPARED_STATEMENTS=false (what a transaction-pooling
pgbouncer before 1.21 needs: a statement prepared on one server connection is missing on the
next)."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import select, text

from twinstack_db.engine import async_engine, sync_engine
from twinstack_db.orders import orders
from twinstack_db.settings import AsyncDbPool, DatabaseSettings, SyncDbPool

RUNS = 8  # psycopg prepares a statement on its fifth run on a connection
PREPARED = text("SELECT count(*) FROM pg_prepared_statements")


def settings(url: str, prepared: str) -> DatabaseSettings:
    return DatabaseSettings(database_url=url, db_prepared_statements=prepared)


@pytest.mark.parametrize(("prepared", "expect"), [("true", True), ("false", False)])
def test_sync_engine_prepares_statements_only_when_allowed(database_url: str, prepared: str, expect: bool):
    engine = sync_engine(settings(database_url, prepared), SyncDbPool(pool_size=1, max_overflow=0), "test")
    try:
        with engine.connect() as conn:
            for _ in range(RUNS):
                conn.execute(select(orders).where(orders.c.sku == "none")).all()
            assert (conn.execute(PREPARED).scalar() > 0) is expect
    finally:
        engine.dispose()


@pytest.mark.parametrize(("prepared", "expect"), [("true", True), ("false", False)])
def test_async_engine_prepares_statements_only_when_allowed(database_url: str, prepared: str, expect: bool):
    async def count() -> int:
        engine = async_engine(settings(database_url, prepared), AsyncDbPool(pool_size=1, max_overflow=0), "test")
        try:
            async with engine.connect() as conn:
                for _ in range(RUNS):
                    (await conn.execute(select(orders).where(orders.c.sku == "none"))).all()
                return (await conn.execute(PREPARED)).scalar()
        finally:
            await engine.dispose()

    # In a thread of its own: a loop left running in this one (Playwright's sync API) would
    # refuse asyncio.run.
    with ThreadPoolExecutor(1) as pool:
        assert (pool.submit(lambda: asyncio.run(count())).result() > 0) is expect


def test_a_setting_that_is_not_a_boolean_is_refused(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("TWINSTACK_DB_PREPARED_STATEMENTS", "sometimes")
    with pytest.raises(ValueError, match="db_prepared_statements"):
        DatabaseSettings()
