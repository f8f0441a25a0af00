"""Operations that are about the database, not about orders: whether it answers (the /ready
probes' ping) and a query that holds its connection for a while (the I/O workload GET /db).
How an operation runs: twinstack_db/operation.py."""

from __future__ import annotations

from sqlalchemy import bindparam, func, select, text

from .operation import Operation, Query, Statement

HOLD = Statement.of(select(func.pg_sleep(bindparam("seconds"))))
PING = Statement.of(text("SELECT 1"))


def hold(delay_ms: int) -> Operation:
    """One round trip that keeps its connection for ``delay_ms``: the "database query"
    I/O workload (GET /db)."""
    yield Query(HOLD, {"seconds": delay_ms / 1000})


def ping() -> Operation:
    yield Query(PING)
