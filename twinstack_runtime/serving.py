"""Settings for the gunicorn masters, read by each service's ``gunicorn.conf.py``.

Each pool reads its own variables (``TWINSTACK_ASYNC_*``, ``TWINSTACK_SYNC_*``); the timeout
values are module constants because they are one ordering across nginx, gunicorn and the
supervisor, asserted by tests/test_timeouts.py, not knobs to turn one at a time.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from twinstack_db import budget
from twinstack_db.budget import PoolBudget
from twinstack_db.settings import AsyncDbPool, DatabaseSettings, SyncDbPool

# The ordering, longest-allowed request first (see docs/architecture.md, "Timeouts"):
#   contract MAX_REQUEST_MS (30 s) < nginx proxy_read_timeout (35 s)
#   < gunicorn timeout (40 s) <= graceful_timeout (40 s) < supervisor stopwaitsecs (50 s)
# and gunicorn keepalive (75 s) > nginx upstream keepalive_timeout (60 s).
TIMEOUT_S = 40
GRACEFUL_TIMEOUT_S = 40
KEEPALIVE_S = 75

# Where each service listens by default, natively and inside its container (one definition:
# native mode, the apps and tests/docker read these; docker-compose.yml's literals are checked
# against them).
ASYNC_PORT = 8001
SYNC_PORT = 8002
DOWNSTREAM_PORT = 8003


def usable_cpus() -> int:
    """CPUs this process may run on: its affinity mask, capped by a cgroup v2 CPU quota
    (``docker run --cpus``), which the affinity mask does not show."""
    count = len(os.sched_getaffinity(0))
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()
        if quota != "max":
            count = min(count, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return count


def async_workers(cpus: int) -> int:
    """An event loop is single-threaded: one worker per usable CPU uses every core; more only
    adds context switches."""
    return cpus


def sync_workers(cpus: int) -> int:
    """gunicorn's own rule for sync workers, (2 x CPUs) + 1: while one worker waits on I/O,
    another can use the core."""
    return 2 * cpus + 1


def sync_max_inflight(workers: int) -> int:
    """Requests nginx lets into the sync pool at once (then 503 at once): ten a worker, a short
    queue of its own beside the one it serves, so an overload is shed instead of waiting."""
    return 10 * workers


def client_share(limit: int) -> int:
    """What one client address may hold of a limit nginx sets (the sync pool's in-flight
    requests, the async pool's database connections): half, so one client never takes all."""
    return max(1, limit // 2)


class PoolSettings(BaseSettings):
    """One gunicorn pool; AsyncPool and SyncPool below give it its variables' prefix."""

    # env_ignore_empty: compose passes `${VAR:-}` as "", which means "use the default".
    model_config = SettingsConfigDict(extra="ignore", env_ignore_empty=True)

    host: str = Field("127.0.0.1", description="Interface to bind: loopback natively, 0.0.0.0 in a container.")
    port: int = Field(ASYNC_PORT, ge=1, le=65535)
    workers: int | None = Field(None, ge=1, le=256, description="Worker processes; default derived from CPUs.")
    worker_class: Literal["sync", "gthread", "gevent"] = "sync"
    threads: int = Field(4, ge=1, le=256, description="Threads per worker (gthread only).")
    worker_connections: int = Field(1000, ge=1, description="Concurrent requests per worker (gevent only).")
    # Recycling bounds a slow leak; it is not free: a new worker re-imports the app (about
    # 0.3 s of CPU) and closes the kept-alive connections nginx had with the old one. At
    # 10 000 an async worker at full load on a 2-CPU machine (about 6 000 req/s each)
    # recycled every 2 s. 2 000 000 keeps each for several minutes at full load there, and
    # for days at ordinary traffic; the jitter keeps workers from recycling together.
    max_requests: int = Field(2_000_000, ge=0, description="Recycle a worker after this many requests (0: never).")
    max_requests_jitter: int = Field(200_000, ge=0)
    log_level: Literal["debug", "info", "warning", "error", "critical"] = "info"
    log_file: Path | None = Field(
        None,
        description="Write the JSON log lines to this file (reopened after rotation); unset: stderr.",
    )
    # One container's CPUs, so not per-pool: Kubernetes hands each container its own limit.
    cpu_limit: int | None = Field(
        None,
        ge=1,
        le=256,
        validation_alias="TWINSTACK_CPU_LIMIT",
        description="The CPUs this container may use, as its orchestrator says (Kubernetes: limits.cpu through "
        "the downward API, rounded up); caps the CPUs the worker count is derived from.",
    )
    # Shared by the whole stack, so not per-pool: TWINSTACK_RUN_DIR, as native mode sets it.
    run_dir: Path = Field(
        Path("run"), validation_alias="TWINSTACK_RUN_DIR", description="Where the control socket goes."
    )

    def cpus(self) -> int:
        """The CPUs the worker count is derived from: usable here, and within the limit given."""
        return min(usable_cpus(), self.cpu_limit) if self.cpu_limit else usable_cpus()

    def bind(self) -> list[str]:
        return [f"{self.host}:{self.port}"]

    def metrics_dir(self, name: str) -> str:
        """prometheus-client's multiprocess directory: one per pool, since each pool's
        /metrics sums every file in it."""
        return str(self.run_dir.resolve() / f"metrics-{name}")

    def control_socket(self, name: str) -> str:
        # gunicorn >= 25 opens a control socket at one per-user default path; two masters
        # would fight over it, so each pool gets its own.
        self.run_dir.mkdir(parents=True, exist_ok=True)
        return str(self.run_dir.resolve() / f"gunicorn-{name}.ctl")


class AsyncPool(PoolSettings):
    model_config = SettingsConfigDict(env_prefix="TWINSTACK_ASYNC_")

    port: int = Field(ASYNC_PORT, ge=1, le=65535)

    def worker_count(self) -> int:
        return self.workers or async_workers(self.cpus())


class SyncPool(PoolSettings):
    model_config = SettingsConfigDict(env_prefix="TWINSTACK_SYNC_")

    port: int = Field(SYNC_PORT, ge=1, le=65535)

    def worker_count(self) -> int:
        return self.workers or sync_workers(self.cpus())


class DatabaseClients(BaseSettings):
    """Which pools open connections to the one database. Both by default (where a pool is
    not deployed, counting it only makes the check stricter); native mode names the halves
    it runs."""

    model_config = SettingsConfigDict(env_prefix="TWINSTACK_", extra="ignore", env_ignore_empty=True)

    db_clients: str = Field("async,sync", pattern=r"^(async|sync)(,(async|sync))?$")


def database_budget(clients: Iterable[str] | None = None, env_file: Path | None = None) -> list[PoolBudget]:
    """Each pool that uses the database (``clients``, else TWINSTACK_DB_CLIENTS), with its
    worker count and its per-worker pool, from the environment (and ``env_file`` under it)."""
    read = {"_env_file": env_file} if env_file else {}
    pools = {
        "async": lambda: PoolBudget("async", AsyncPool(**read).worker_count(), AsyncDbPool(**read)),
        "sync": lambda: PoolBudget("sync", SyncPool(**read).worker_count(), SyncDbPool(**read)),
    }
    names = clients if clients is not None else DatabaseClients().db_clients.split(",")
    return [pools[name]() for name in dict.fromkeys(names)]


def check_database_budget() -> int:
    """The budget check every master runs when it starts (gunicorn_base.on_starting)."""
    return budget.check(database_budget(), DatabaseSettings().db_max_connections)
