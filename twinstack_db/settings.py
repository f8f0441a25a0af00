"""Where the database is and how many connections each worker may hold, for both services and
the migrator: environment -> typed settings, as everywhere else (pydantic-settings).

Every worker process has its own pool (a connection is a socket: it cannot cross a fork), so
what PostgreSQL sees is ``workers x pool_size`` per gunicorn pool. Each pool
sizes its workers' connection pools with its own variables (``TWINSTACK_ASYNC_DB_*``,
``TWINSTACK_SYNC_DB_*``); the sum is checked against ``max_connections`` when a master
starts (:mod:`twinstack_db.budget`).
"""

from __future__ import annotations

import os

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from twinstack_contract.models import MAX_REQUEST_MS

# The database's own limit on one statement, a little above the longest request the contract
# allows (30 s) and below nginx's proxy_read_timeout (35 s): a query never outlives its request
# by more than this, and nginx answers first only when the database is not the one waiting.
STATEMENT_TIMEOUT_MS = MAX_REQUEST_MS + 2_000
# A connect attempt that takes longer fails (503 database_unavailable) instead of holding the
# request: a server that is down refuses at once, one that is unreachable hangs.
CONNECT_TIMEOUT_S = 3
# How many connections to keep free of the pools besides the migrator's one: an operator's
# psql, pg_dump, a monitoring probe. (PostgreSQL's superuser_reserved_connections, 3, are part
# of max_connections and refused to other roles only.)
RESERVED_CONNECTIONS = 5
MIGRATOR_CONNECTIONS = 1
# PostgreSQL's own default max_connections: the server's, unless the budget needs more.
DEFAULT_MAX_CONNECTIONS = 100


def sqlalchemy_url(url: str) -> str:
    """TWINSTACK_DATABASE_URL (a libpq URL, postgresql://...) for SQLAlchemy with psycopg 3,
    one dialect for both kinds of engine: async (create_async_engine) and sync."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in ("postgresql", "postgres"):
        raise ValueError("TWINSTACK_DATABASE_URL must be a postgresql:// URL")
    return f"postgresql+psycopg://{rest}"


class DatabaseSettings(BaseSettings):
    """The server both pools and the migrator use."""

    # env_ignore_empty: compose passes `${VAR:-}` as "", which means "use the default".
    model_config = SettingsConfigDict(env_prefix="TWINSTACK_", extra="ignore", env_ignore_empty=True)

    database_url: str = Field(
        "postgresql://twinstack@127.0.0.1:15432/twinstack",
        description="libpq URL of the database (native mode sets it, with the password it made).",
    )
    db_max_connections: int = Field(
        DEFAULT_MAX_CONNECTIONS,
        ge=1,
        description="The server's max_connections: the connection budget is checked against it.",
    )
    db_pool_timeout_s: float = Field(
        5.0, gt=0, le=30, description="How long a request waits for a free pooled connection; then 503 pool_exhausted."
    )
    db_prepared_statements: bool = Field(
        True,
        description="Let psycopg prepare a statement on the server after its fifth run on a connection. Set false "
        "behind a transaction-pooling pgbouncer that keeps no prepared statements (before 1.21, or with "
        "max_prepared_statements = 0): a statement prepared on one server connection is missing on the next.",
    )


class PoolLimits(BaseSettings):
    """One worker's connection pool; AsyncDbPool and SyncDbPool give it its variables.

    A fixed size: a worker opens its connections when it starts and keeps them, so the budget
    is what PostgreSQL sees, and load never opens a session (twinstack_db/pool.py)."""

    model_config = SettingsConfigDict(extra="ignore", env_ignore_empty=True)

    pool_size: int = Field(5, ge=1, le=200, description="Connections a worker opens and keeps.")

    @model_validator(mode="after")
    def _no_overflow(self) -> PoolLimits:
        """Refuse the variable earlier releases had, instead of running with fewer connections."""
        gone = f"{self.model_config.get('env_prefix', '')}MAX_OVERFLOW"
        if self.model_config.get("env_prefix") and os.environ.get(gone):
            raise ValueError(
                f"{gone} is no longer read: each worker's pool has a fixed size, opened at start and kept. "
                f"Add it to {gone.removesuffix('MAX_OVERFLOW')}POOL_SIZE and remove it."
            )
        return self

    def per_worker(self) -> int:
        return self.pool_size


class AsyncDbPool(PoolLimits):
    """An event loop serves hundreds of requests at once; each holds a connection only while its
    query runs, so a worker needs more than one but far fewer than its requests in flight."""

    model_config = SettingsConfigDict(env_prefix="TWINSTACK_ASYNC_DB_")

    pool_size: int = Field(10, ge=1, le=200, description="Connections each async worker opens and keeps.")


class SyncDbPool(PoolLimits):
    """A sync worker serves one request at a time; its job threads (TWINSTACK_JOB_THREADS,
    2) record progress through the same pool."""

    model_config = SettingsConfigDict(env_prefix="TWINSTACK_SYNC_DB_")

    pool_size: int = Field(3, ge=1, le=200, description="Connections each sync worker opens and keeps.")
