"""Running an operation (twinstack_db.orders) on a pooled connection: synchronously for the
Flask service, awaited for the FastAPI service. Both drivers do the same four things:

- one transaction per operation (``engine.begin()``): committed when it returns, rolled back
  when it raises;
- the database's failures become the contract's answers (:func:`translated`): no free
  connection within the pool timeout is ``503 pool_exhausted``, a database that is down or
  unreachable is ``503 database_unavailable``, both with ``Retry-After``;
- the time spent waiting for a connection and running SQL is added up per request
  (:data:`SQL_TIME`), for ``Server-Timing`` and the metrics;
- the wait for a connection is recorded in the pool's histogram.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from sqlalchemy import Engine, exc
from sqlalchemy.ext.asyncio import AsyncEngine

from twinstack_contract.errors import ContractError

from .orders import Operation, Query

RETRY_AFTER_S = "1"
# Seconds spent on the database by the current request: connection wait plus statements.
# Each request runs in its own context (a task under ASGI, a thread's under WSGI), and the
# observability middleware resets it before the request and reads it after.
SQL_TIME: ContextVar[float] = ContextVar("twinstack_sql_time", default=0.0)


def add_sql_time(seconds: float) -> None:
    SQL_TIME.set(SQL_TIME.get() + seconds)


@contextmanager
def translated() -> Iterator[None]:
    """SQLAlchemy's errors as the contract's 503s; anything else (a bug) propagates as is."""
    try:
        yield
    except exc.TimeoutError as error:  # QueuePool: no connection free within pool_timeout
        raise ContractError(
            503,
            "pool_exhausted",
            "Every database connection of this worker is busy; try again shortly.",
            headers={"Retry-After": RETRY_AFTER_S},
        ) from error
    except exc.DBAPIError as error:
        if not (isinstance(error, exc.OperationalError | exc.InterfaceError) or error.connection_invalidated):
            raise
        raise ContractError(
            503,
            "database_unavailable",
            "The database is unavailable; try again shortly.",
            headers={"Retry-After": RETRY_AFTER_S},
        ) from error


def _result(result: Any, query: Query) -> Any:
    mappings = result.mappings()
    return mappings.all() if query.rows == "all" else mappings.first()


Observe = Callable[[float], None]


class Database:
    """A sync engine, for one WSGI worker process."""

    def __init__(self, engine: Engine, observe_wait: Observe = lambda s: None) -> None:
        self.engine = engine
        self.observe_wait = observe_wait

    def run(self, operation: Operation) -> Any:
        start = time.perf_counter()
        try:
            with translated(), self.engine.begin() as conn:
                self.observe_wait(time.perf_counter() - start)
                query = next(operation)
                while True:
                    try:
                        query = operation.send(_result(conn.execute(query.statement), query))
                    except StopIteration as done:  # caught inside the block: it commits
                        return done.value
        finally:
            add_sql_time(time.perf_counter() - start)

    def close(self) -> None:
        self.engine.dispose()


class AsyncDatabase:
    """An async engine, for one ASGI worker's event loop."""

    def __init__(self, engine: AsyncEngine, observe_wait: Observe = lambda s: None) -> None:
        """Made inside the worker's running loop, which its connections belong to."""
        self.engine = engine
        self.observe_wait = observe_wait
        self.loop = asyncio.get_running_loop()

    def run_from_thread(self, operation: Operation) -> Any:
        """For a thread of the worker (its job threads): the operation runs on the loop, the
        thread waits for it (bounded by the statement timeout)."""
        if self.loop.is_closed():  # a thread outliving the worker's loop: nothing to run on
            raise RuntimeError("the worker's event loop has stopped")
        return asyncio.run_coroutine_threadsafe(self.run(operation), self.loop).result()

    async def run(self, operation: Operation) -> Any:
        start = time.perf_counter()
        try:
            with translated():
                async with self.engine.begin() as conn:
                    self.observe_wait(time.perf_counter() - start)
                    query = next(operation)
                    while True:
                        try:
                            query = operation.send(_result(await conn.execute(query.statement), query))
                        except StopIteration as done:  # caught inside the block: it commits
                            return done.value
        finally:
            add_sql_time(time.perf_counter() - start)

    async def close(self) -> None:
        await self.engine.dispose()
