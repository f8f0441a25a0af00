"""Each worker's pool (twinstack_db/pool.py) on the tests' PostgreSQL: a fixed set of sessions
under any load, dead connections replaced without a round trip on checkout, a fork that never
shares a socket, and psycopg's prepared statements on or off as the settings say."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest
from sqlalchemy import bindparam, select, text

from tests.support import sessions_opened
from twinstack_db import orders, probes
from twinstack_db.operation import Operation, Query, Statement
from twinstack_db.session import AsyncDatabase, Database
from twinstack_db.settings import DatabaseSettings, PoolLimits

LIMITS = PoolLimits(pool_size=3)
BACKEND = Statement.of(text("SELECT pg_backend_pid() AS pid"))
PREPARED = Statement.of(text("SELECT count(*) AS n FROM pg_prepared_statements"))


def backend() -> Operation:
    row = yield Query(BACKEND)
    return row["pid"]


def pool_backends(url: str, name: str) -> set[int]:
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT pid FROM pg_stat_activity WHERE application_name = %s", (name,)).fetchall()
    return {pid for (pid,) in rows}


def terminate(url: str, pids: set[int]) -> None:
    """End the sessions, waiting until each has ended (pg_terminate_backend only signals)."""
    with psycopg.connect(url) as conn:
        for pid in pids:
            conn.execute("SELECT pg_terminate_backend(%s, 5000)", (pid,))


def in_own_loop(coroutine_factory):
    """A loop of its own in a thread: one left running in this thread (Playwright's sync API)
    would refuse asyncio.run."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(lambda: asyncio.run(coroutine_factory())).result()


@pytest.fixture
def sync_db(database_url: str) -> Iterator[Database]:
    db = Database.open(DatabaseSettings(database_url=database_url), LIMITS, "test-pool-sync")
    yield db
    db.close()


@pytest.mark.parametrize("clients", [1, LIMITS.pool_size, 4 * LIMITS.pool_size])
def test_a_sync_pool_opens_no_session_under_steady_load(sync_db: Database, database_url: str, clients: int):
    """Below, at and past the pool's size: once warm, thousands of operations open nothing."""
    with ThreadPoolExecutor(clients) as threads:
        list(threads.map(lambda _: sync_db.run(probes.hold(20)), range(2 * clients)))  # warm-up
        before = sessions_opened(database_url)
        list(threads.map(lambda _: sync_db.run(probes.ping()), range(400)))
        list(threads.map(lambda _: sync_db.run(probes.hold(5)), range(4 * clients)))
        after = sessions_opened(database_url)
    assert after - before == 1, "sessions were opened under load (1 is the observer's own)"
    assert len(pool_backends(database_url, "test-pool-sync")) <= LIMITS.per_worker()


@pytest.mark.parametrize("clients", [1, LIMITS.pool_size, 4 * LIMITS.pool_size])
def test_an_async_pool_opens_no_session_under_steady_load(database_url: str, clients: int):
    async def load() -> tuple[int, int, int]:
        db = await AsyncDatabase.open(DatabaseSettings(database_url=database_url), LIMITS, "test-pool-async")
        try:
            await asyncio.gather(*(db.run(probes.hold(20)) for _ in range(2 * clients)))  # warm-up
            before = await asyncio.to_thread(sessions_opened, database_url)
            for _ in range(400 // clients):
                await asyncio.gather(*(db.run(probes.ping()) for _ in range(clients)))
            after = await asyncio.to_thread(sessions_opened, database_url)
            held = await asyncio.to_thread(pool_backends, database_url, "test-pool-async")
            return before, after, len(held)
        finally:
            await db.close()

    before, after, held = in_own_loop(load)
    assert after - before == 1, "sessions were opened under load (1 is the observer's own)"
    assert held <= LIMITS.per_worker()


def test_a_sync_pool_replaces_connections_the_server_closed(sync_db: Database, database_url: str):
    """Every idle connection terminated by the server (a restart, an idle timeout): the next
    operation is served, on a new session, without an error."""
    first = sync_db.run(backend())
    terminate(database_url, pool_backends(database_url, "test-pool-sync"))
    for _ in range(3):
        assert sync_db.run(backend()) != first


def test_an_async_pool_replaces_connections_the_server_closed(database_url: str):
    async def check() -> tuple[int, list[int]]:
        db = await AsyncDatabase.open(DatabaseSettings(database_url=database_url), LIMITS, "test-pool-async-dead")
        try:
            first = await db.run(backend())
            await asyncio.to_thread(terminate, database_url, pool_backends(database_url, "test-pool-async-dead"))
            return first, [await db.run(backend()) for _ in range(3)]
        finally:
            await db.close()

    first, later = in_own_loop(check)
    assert first not in later


def test_a_forked_child_never_uses_its_parents_connections(sync_db: Database, database_url: str):
    """preload_app turned on: the child opens its own sessions and the parent's stay open."""
    sync_db.run(backend())
    deadline = time.monotonic() + 10
    while len(parents := pool_backends(database_url, "test-pool-sync")) < LIMITS.pool_size:  # the pool has filled
        assert time.monotonic() < deadline, parents
        time.sleep(0.05)
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the child reports through the pipe
        try:
            os.write(write, str(sync_db.run(backend())).encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        pid_in_child = int(pipe.read() or 0)
    os.waitpid(child, 0)
    assert pid_in_child and pid_in_child not in parents
    assert {sync_db.run(backend()) for _ in range(4)} <= parents  # the parent's sessions still serve it


@pytest.mark.parametrize(("prepared", "expect"), [("true", True), ("false", False)])
def test_statements_are_prepared_only_when_allowed(database_url: str, prepared: str, expect: bool):
    """psycopg prepares a statement on its fifth run on a connection; behind a transaction-pooling
    pgbouncer before 1.21 that must be off (TWINSTACK_DB_PREPARED_STATEMENTS=false)."""
    settings = DatabaseSettings(database_url=database_url, db_prepared_statements=prepared)
    db = Database.open(settings, PoolLimits(pool_size=1), "test-prepared")

    def count() -> Operation:
        for _ in range(8):
            yield Query(orders.BY_KEY, {"key": "none"})
        return (yield Query(PREPARED))["n"]

    try:
        assert (db.run(count()) > 0) is expect
    finally:
        db.close()


def test_a_statement_with_an_expanding_in_is_refused():
    """Its SQL would change with the list's length: no text compiled once, nothing prepared."""
    with pytest.raises(ValueError, match="ANY"):
        Statement.of(select(orders.orders).where(orders.orders.c.sku.in_(bindparam("skus", expanding=True))))


def test_a_setting_that_is_not_a_boolean_is_refused(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("TWINSTACK_DB_PREPARED_STATEMENTS", "sometimes")
    with pytest.raises(ValueError, match="db_prepared_statements"):
        DatabaseSettings()
