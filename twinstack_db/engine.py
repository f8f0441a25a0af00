"""The engines: one per worker process, created after the fork, never at import.

A pooled connection is a socket. An engine created before gunicorn forks (at import, in the
master, or with ``preload_app = True``) hands every worker copies of the same sockets: two
processes then read each other's query results, or one closes the server's session under the
other. So the async service creates its engine in the lifespan of each worker (inside the
worker's event loop, which an async connection belongs to), and the sync service in its app
factory, which gunicorn calls in each worker. :func:`sync_engine` also registers a fork hook
that drops inherited connections in a child (SQLAlchemy's ``dispose(close=False)``), so a
``preload_app`` someone turns on later costs a reconnect, not corrupted sessions.
"""

from __future__ import annotations

import os
import weakref
from typing import Any

from sqlalchemy import Engine, create_engine
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from .settings import CONNECT_TIMEOUT_S, STATEMENT_TIMEOUT_MS, DatabaseSettings, PoolLimits, sqlalchemy_url


def _options(database: DatabaseSettings, limits: PoolLimits, application_name: str) -> dict[str, Any]:
    return {
        "pool_size": limits.pool_size,
        "max_overflow": limits.max_overflow,
        "pool_timeout": database.db_pool_timeout_s,
        # A connection the server closed (a restart, an idle timeout, a failover) is found on
        # checkout and replaced, so a request never gets a dead one: the pools recover from a
        # database restart by themselves, without restarting a worker.
        "pool_pre_ping": True,
        # Below any idle timeout a proxy or pgbouncer in between may have.
        "pool_recycle": 1800,
        "connect_args": {
            "connect_timeout": CONNECT_TIMEOUT_S,
            # pg_stat_activity shows which pool each connection belongs to.
            "application_name": application_name,
            "options": f"-c statement_timeout={STATEMENT_TIMEOUT_MS}",
            # psycopg prepares a statement run five times on a connection (None: never).
            **({} if database.db_prepared_statements else {"prepare_threshold": None}),
        },
    }


def async_engine(database: DatabaseSettings, limits: PoolLimits, application_name: str) -> AsyncEngine:
    """Call from inside the worker's running loop (the lifespan); dispose it there too."""
    return create_async_engine(sqlalchemy_url(database.database_url), **_options(database, limits, application_name))


def sync_engine(database: DatabaseSettings, limits: PoolLimits, application_name: str) -> Engine:
    """Call in the worker process (after the fork); see the module docstring."""
    engine = create_engine(sqlalchemy_url(database.database_url), **_options(database, limits, application_name))
    ref = weakref.ref(engine)

    def _drop_inherited() -> None:
        if (inherited := ref()) is not None:
            inherited.dispose(close=False)  # the parent keeps its sockets; the child opens its own

    os.register_at_fork(after_in_child=_drop_inherited)
    return engine
