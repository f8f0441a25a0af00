"""The connection budget: every connection the stack may open, against the server's
``max_connections``.

PostgreSQL refuses a connection past ``max_connections`` with "too many clients already", at
the worst time: when a worker starts, or reconnects after a restart. The sum is known before any
worker starts, so each gunicorn master checks it when it starts (``on_starting``, see
twinstack_runtime/gunicorn_base.py) and refuses to start with the numbers, instead.
"""

from __future__ import annotations

from dataclasses import dataclass

from .settings import MIGRATOR_CONNECTIONS, RESERVED_CONNECTIONS, PoolLimits


class BudgetError(RuntimeError):
    pass


@dataclass(frozen=True)
class PoolBudget:
    name: str  # "async" or "sync"
    workers: int
    limits: PoolLimits

    @property
    def connections(self) -> int:
        return self.workers * self.limits.per_worker()

    def line(self) -> str:
        return f"{self.name}: {self.workers} workers x pool_size {self.limits.pool_size} = {self.connections}"


def needed(pools: list[PoolBudget]) -> int:
    """What the stack may open at once: every pool full, the migrator, the reserve."""
    return sum(p.connections for p in pools) + MIGRATOR_CONNECTIONS + RESERVED_CONNECTIONS


def check(pools: list[PoolBudget], max_connections: int) -> int:
    """Return the total, or raise with every term of the sum when it does not fit."""
    total = needed(pools)
    if total > max_connections:
        terms = "; ".join(p.line() for p in pools)
        raise BudgetError(
            f"the database connection budget does not fit: {terms}; + {MIGRATOR_CONNECTIONS} migrator "
            f"+ {RESERVED_CONNECTIONS} reserved = {total} > max_connections {max_connections}. Lower the "
            "workers or TWINSTACK_<POOL>_DB_POOL_SIZE, or raise TWINSTACK_DB_MAX_CONNECTIONS "
            "(and the server's max_connections with it)."
        )
    return total
