"""Running an operation (twinstack_db/operation.py) on a pooled connection (twinstack_db/pool.py):
synchronously for the Flask service, awaited for the FastAPI service. Both do the same three
things:

- each query's compiled statement runs on psycopg directly, its values bound by name;
- the database's failures become the contract's answers (:func:`translated`): no free
  connection within the pool timeout is ``503 pool_exhausted``, a database that is down or
  unreachable is ``503 database_unavailable``, both with ``Retry-After``;
- the time spent waiting for a connection and running SQL is added up per request
  (:data:`SQL_TIME`), for ``Server-Timing`` and the metrics.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import psycopg
from psycopg_pool import PoolClosed, PoolTimeout

from twinstack_contract.errors import ContractError

from .operation import Operation
from .pool import AsyncPool, NoEvents, PoolEvents, SyncPool
from .settings import STATEMENT_TIMEOUT_MS, DatabaseSettings, PoolLimits

RETRY_AFTER_S = "1"
# The longest an operation can take: the wait for a connection, then its statements.
FROM_THREAD_TIMEOUT_S = 30 + STATEMENT_TIMEOUT_MS / 1000
# Seconds spent on the database by the current request: connection wait plus statements.
# Each request runs in its own context (a task under ASGI, a thread's under WSGI), and the
# observability middleware resets it before the request and reads it after.
SQL_TIME: ContextVar[float] = ContextVar("twinstack_sql_time", default=0.0)


def add_sql_time(seconds: float) -> None:
    SQL_TIME.set(SQL_TIME.get() + seconds)


def unavailable() -> ContractError:
    return ContractError(
        503,
        "database_unavailable",
        "The database is unavailable; try again shortly.",
        headers={"Retry-After": RETRY_AFTER_S},
    )


@contextmanager
def translated() -> Iterator[None]:
    """The pool's and the driver's failures as the contract's 503s; anything else (a bug, a
    constraint the contract should have checked first) propagates as is."""
    try:
        yield
    except PoolTimeout as error:  # no connection free within the pool timeout
        raise ContractError(
            503,
            "pool_exhausted",
            "Every database connection of this worker is busy; try again shortly.",
            headers={"Retry-After": RETRY_AFTER_S},
        ) from error
    except PoolClosed as error:  # closed under the request: the database went away
        raise unavailable() from error
    except (psycopg.OperationalError, psycopg.InterfaceError) as error:
        raise unavailable() from error


class Database:
    """A sync pool, for one WSGI worker process (and its job threads)."""

    def __init__(self, pool: SyncPool) -> None:
        self.pool = pool

    @classmethod
    def open(
        cls, database: DatabaseSettings, limits: PoolLimits, name: str, events: PoolEvents | None = None
    ) -> Database:
        """A pool named ``name`` (pg_stat_activity's application_name), connecting in the background."""
        pool = SyncPool(database, limits, name, events or NoEvents())
        pool.open()
        return cls(pool)

    def run(self, operation: Operation) -> Any:
        start = time.perf_counter()
        try:
            query = next(operation)  # what precedes the first query (a check, a refusal) holds no connection
        except StopIteration as done:
            return done.value
        try:
            with translated(), self.pool.connection() as conn:
                while True:
                    cursor = conn.execute(query.statement.sql, query.parameters())
                    result = cursor.fetchall() if query.rows == "all" else cursor.fetchone()
                    try:
                        query = operation.send(result)
                    except StopIteration as done:
                        return done.value
        finally:
            operation.close()  # one stopped by a failure runs its own clean-up now, not when collected
            add_sql_time(time.perf_counter() - start)

    def close(self) -> None:
        self.pool.close()


class AsyncDatabase:
    """An async pool, for one ASGI worker's event loop."""

    def __init__(self, pool: AsyncPool) -> None:
        """Made inside the worker's running loop, which its connections belong to."""
        self.pool = pool
        self.loop = asyncio.get_running_loop()

    @classmethod
    async def open(
        cls, database: DatabaseSettings, limits: PoolLimits, name: str, events: PoolEvents | None = None
    ) -> AsyncDatabase:
        """Inside the worker's running loop; see :meth:`Database.open`."""
        pool = AsyncPool(database, limits, name, events or NoEvents())
        await pool.open()
        return cls(pool)

    def run_from_thread(self, operation: Operation) -> Any:
        """For a thread of the worker (its job threads): the operation runs on the loop, the
        thread waits for it (bounded by the statement timeout)."""
        if self.loop.is_closed():  # a thread outliving the worker's loop: nothing to run on
            raise RuntimeError("the worker's event loop has stopped")
        # Bounded: a loop that stops before it ran the operation must not leave the thread waiting.
        return asyncio.run_coroutine_threadsafe(self.run(operation), self.loop).result(timeout=FROM_THREAD_TIMEOUT_S)

    async def run(self, operation: Operation) -> Any:
        start = time.perf_counter()
        try:
            query = next(operation)  # as Database.run: no connection before the first query
        except StopIteration as done:
            return done.value
        try:
            with translated():
                async with self.pool.connection() as conn:
                    while True:
                        cursor = await conn.execute(query.statement.sql, query.parameters())
                        result = await (cursor.fetchall() if query.rows == "all" else cursor.fetchone())
                        try:
                            query = operation.send(result)
                        except StopIteration as done:
                            return done.value
        finally:
            operation.close()  # one stopped by a failure runs its own clean-up now, not when collected
            add_sql_time(time.perf_counter() - start)

    async def close(self) -> None:
        await self.pool.close()
