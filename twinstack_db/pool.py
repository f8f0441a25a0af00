"""Each worker's connection pool: psycopg's own (psycopg_pool), made after the fork, never at
import, with what a pool behind a web service needs on top of it.

- **A fixed set of sessions.** A worker opens ``pool_size`` connections when it starts and keeps
  them (psycopg_pool's ``min_size`` and ``max_size`` both). When all are busy, a request waits
  for one, at most ``TWINSTACK_DB_POOL_TIMEOUT_S``, then gets ``503 pool_exhausted``: load
  never opens a session. A pool that grows under load and shrinks when idle would open its
  extra sessions exactly when the database is busiest, and against a managed PostgreSQL each
  is a TCP, TLS and SCRAM handshake; the budget (twinstack_db/budget.py) is then also exactly
  what the server sees.
- **No round trip on checkout.** A connection the server closed (a restart, a failover, an
  idle timeout) has something to read, its end of file, while a live idle one has nothing: a
  non-blocking ``poll()`` of its socket (:func:`alive`) finds it, and it is replaced.
- **A database that is down answers at once.** When the pool cannot replace a connection (the
  server refused twice), the worker closes the pool, which fails the requests waiting in it;
  until a connection attempt succeeds again, requests get ``503 database_unavailable`` straight
  away, one of them trying to connect (a probe) every ``PROBE_EVERY_S``. Once a probe gets
  through, a new pool opens: the workers recover by themselves, without a restart.
- **Autocommit.** Each statement is its own transaction (twinstack_db/operation.py).

A pooled connection is a socket: one made before gunicorn forks (at import, in the master,
with ``preload_app = True``) would be shared by every worker, which then read each other's
results. So the async service makes its pool in the lifespan of each worker (inside the
worker's event loop, which an async connection belongs to) and the sync service in its app
factory, which gunicorn calls in each worker; a fork after that (``preload_app`` turned on
later) makes the child open a pool of its own, leaving the parent's sockets alone.
"""

from __future__ import annotations

import asyncio
import os
import select
import threading
import time
import weakref
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any, Protocol

import psycopg
from psycopg import AsyncConnection, Connection
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool, ConnectionPool, PoolClosed, PoolTimeout

from .settings import CONNECT_TIMEOUT_S, STATEMENT_TIMEOUT_MS, DatabaseSettings, PoolLimits

# A connection older than this is replaced when it is next returned: below any idle timeout a
# proxy or pgbouncer in between may have, and a failover's new primary is found within it.
LIFETIME_S = 1800
# While the database is unavailable, how often one request of a worker tries to connect.
PROBE_EVERY_S = 0.5
_READABLE = select.POLLIN | select.POLLERR | select.POLLHUP


class Unavailable(psycopg.OperationalError):
    """The database cannot be reached: no pool, or the probe failed."""


class PoolEvents(Protocol):
    """What a pool reports, for the metrics (twinstack_runtime/metrics.py)."""

    def opened(self) -> None: ...
    def closed(self) -> None: ...
    def checked_out(self, waited_s: float) -> None: ...
    def checked_in(self) -> None: ...


class NoEvents:
    def opened(self) -> None: ...
    def closed(self) -> None: ...
    def checked_out(self, waited_s: float) -> None: ...
    def checked_in(self) -> None: ...


def alive(conn: Connection | AsyncConnection) -> bool:
    """Whether an idle connection is still open, without a round trip: its socket has nothing
    to read (a closed one reads its end of file, or the server's last error)."""
    if conn.closed or conn.broken:
        return False
    poll = select.poll()
    poll.register(conn.pgconn.socket, _READABLE)
    return not poll.poll(0)


def _counted_close(conn: Any, events: PoolEvents) -> None:
    """Once per connection opened: a broken one reads as closed already, and is closed again."""
    if getattr(conn, "_counted", False):
        conn._counted = False
        events.closed()


def connect_kwargs(database: DatabaseSettings, application_name: str) -> dict[str, Any]:
    return {
        "autocommit": True,
        "row_factory": dict_row,
        "connect_timeout": CONNECT_TIMEOUT_S,
        # pg_stat_activity shows which pool each connection belongs to.
        "application_name": application_name,
        "options": f"-c statement_timeout={STATEMENT_TIMEOUT_MS}",
        # psycopg prepares a statement run five times on a connection (None: never).
        **({} if database.db_prepared_statements else {"prepare_threshold": None}),
    }


class _Probe:
    """Whether the database is reachable, and whose turn it is to find out."""

    def __init__(self) -> None:
        self.next_at = 0.0
        self.running = False

    def claim(self) -> bool:
        now = time.monotonic()
        if self.running or now < self.next_at:
            return False
        self.running, self.next_at = True, now + PROBE_EVERY_S
        return True


class _Base:
    def __init__(self, database: DatabaseSettings, limits: PoolLimits, application_name: str, events: PoolEvents):
        self.url = database.database_url
        self.kwargs = connect_kwargs(database, application_name)
        self.name = application_name
        self.size = limits.per_worker()
        self.timeout = database.db_pool_timeout_s
        self.events = events
        self.probe = _Probe()

    def _options(self) -> dict[str, Any]:
        return {
            "kwargs": self.kwargs,
            "min_size": self.size,
            "max_size": self.size,
            "timeout": self.timeout,
            "max_lifetime": LIFETIME_S,
            # One failed attempt to replace a connection is retried once, then the pool is
            # closed (reconnect_failed): the database is unavailable, see the module docstring.
            "reconnect_timeout": 0,
            "reconnect_failed": self._lost,
            "name": self.name,
            "open": False,
        }

    def _lost(self, pool: Any) -> None:
        raise NotImplementedError


class AsyncPool(_Base):
    """The pool of one ASGI worker's event loop; make it inside the running loop."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        events = self.events

        class Counted(AsyncConnection):
            @classmethod
            async def connect(cls, *a: Any, **kw: Any) -> Any:
                conn = await super().connect(*a, **kw)
                conn._counted = True
                events.opened()
                return conn

            async def close(self) -> None:
                _counted_close(self, events)
                await super().close()

        self.connection_class = Counted
        self.pool: AsyncConnectionPool | None = None
        self._closing: set[asyncio.Task] = set()

    async def open(self) -> None:
        """Start connecting ``pool_size`` connections; a database that is down is no error."""
        self.pool = AsyncConnectionPool(self.url, connection_class=self.connection_class, **self._options())
        await self.pool.open(wait=False)

    async def close(self) -> None:
        pool, self.pool = self.pool, None
        if pool is not None:
            await pool.close()
        if self._closing:
            await asyncio.gather(*self._closing)

    async def _lost(self, pool: AsyncConnectionPool) -> None:
        if pool is self.pool:
            self.pool = None
            task = asyncio.get_running_loop().create_task(pool.close())  # not from its own worker
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)

    async def _reopen(self) -> AsyncConnectionPool:
        if not self.probe.claim():
            raise Unavailable("the database is unavailable")
        try:
            probe = await self.connection_class.connect(self.url, **self.kwargs)
            await probe.close()
            if self.pool is None:
                await self.open()
        finally:
            self.probe.running = False
        assert self.pool is not None
        return self.pool

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[AsyncConnection]:
        start = time.perf_counter()
        pool = self.pool or await self._reopen()
        for _ in range(self.size + 1):
            conn = await pool.getconn()
            if alive(conn):
                break
            await conn.close()  # the pool opens its replacement
            await pool.putconn(conn)
        else:
            raise Unavailable("no live connection")
        self.events.checked_out(time.perf_counter() - start)
        try:
            yield conn
        finally:
            self.events.checked_in()
            if conn.broken:
                await conn.close()
            await pool.putconn(conn)


class SyncPool(_Base):
    """The pool of one WSGI worker process; make it in the worker (after the fork)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        events = self.events

        class Counted(Connection):
            @classmethod
            def connect(cls, *a: Any, **kw: Any) -> Any:
                conn = super().connect(*a, **kw)
                conn._counted = True
                events.opened()
                return conn

            def close(self) -> None:
                _counted_close(self, events)
                super().close()

        self.connection_class = Counted
        self.pool: ConnectionPool | None = None
        self._lock = threading.Lock()
        self._inherited: list[ConnectionPool] = []
        ref = weakref.ref(self)

        def _after_fork() -> None:
            if (me := ref()) is not None and me.pool is not None:
                # The parent's sockets: kept (never closed, which would end its sessions) but
                # never used; this process opens its own.
                me._inherited.append(me.pool)
                me.pool, me.probe = None, _Probe()  # opened on first use, after a probe

        os.register_at_fork(after_in_child=_after_fork)

    def open(self) -> None:
        self.pool = ConnectionPool(self.url, connection_class=self.connection_class, **self._options())
        self.pool.open(wait=False)

    def close(self) -> None:
        pool, self.pool = self.pool, None
        if pool is not None:
            pool.close()

    def _lost(self, pool: ConnectionPool) -> None:
        with self._lock:
            if pool is not self.pool:
                return
            self.pool = None
        # Called from one of the pool's own threads, which close() waits for.
        threading.Thread(target=pool.close, name=f"{self.name}-close", daemon=True).start()

    def _reopen(self) -> ConnectionPool:
        with self._lock:
            if not self.probe.claim():
                raise Unavailable("the database is unavailable")
        try:
            self.connection_class.connect(self.url, **self.kwargs).close()
            with self._lock:
                if self.pool is None:
                    self.open()
                pool = self.pool
        finally:
            self.probe.running = False
        assert pool is not None
        return pool

    @contextmanager
    def connection(self) -> Iterator[Connection]:
        start = time.perf_counter()
        pool = self.pool or self._reopen()
        for _ in range(self.size + 1):
            conn = pool.getconn()
            if alive(conn):
                break
            conn.close()  # the pool opens its replacement
            pool.putconn(conn)
        else:
            raise Unavailable("no live connection")
        self.events.checked_out(time.perf_counter() - start)
        try:
            yield conn
        finally:
            self.events.checked_in()
            if conn.broken:
                conn.close()
            pool.putconn(conn)


__all__ = ["AsyncPool", "NoEvents", "PoolClosed", "PoolEvents", "PoolTimeout", "SyncPool", "Unavailable", "alive"]
