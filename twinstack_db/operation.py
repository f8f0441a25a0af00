"""How the services talk to the database: an operation is a generator that yields queries and
receives their rows; a session (twinstack_db/session.py) runs it, synchronously for Flask or
awaited for FastAPI. The logic of a route (idempotency, paging, its 404s and 409s) is written
once, in the generator; only the awaiting differs between the services::

    def get(order_id):
        row = yield Query(BY_ID, {"id": order_id})  # one row (a mapping) or None
        if row is None:
            raise ContractError(404, "not_found", "No such order.")
        return row

    Database(...).run(get(order_id))          # Flask
    await AsyncDatabase(...).run(get(order_id))  # FastAPI

What an operation does before its first query (checking its input, refusing at once) runs
before a connection is taken from the pool, and an operation stopped by a failure is closed at
once, so its own ``finally``/``except`` clean-up runs (the jobs queue gives its slot back).

A statement is written with SQLAlchemy (the models are the schema's one definition, with
Alembic) and compiled once, when its module is imported, into the SQL text psycopg runs: a
request pays for no compilation, and the same text every time lets psycopg prepare it on the
server. Every value is a bound parameter (``bindparam``), never text.

Each statement is its own transaction (the connections are in autocommit): a read costs one
round trip, with no BEGIN and COMMIT around it. An operation whose statements must commit
together writes them as one statement (a CTE), as ``create``'s insert-or-find does with
``ON CONFLICT``.
"""

from __future__ import annotations

from collections.abc import Generator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from sqlalchemy import Executable
from sqlalchemy.dialects.postgresql.psycopg import PGDialect_psycopg

_DIALECT = PGDialect_psycopg()


@dataclass(frozen=True)
class Statement:
    """A SQLAlchemy statement, compiled once for psycopg (``%(name)s`` placeholders)."""

    sql: str
    defaults: Mapping[str, Any]

    @classmethod
    def of(cls, statement: Executable) -> Statement:
        compiled = statement.compile(dialect=_DIALECT)
        if any(bind.expanding for bind in compiled.binds.values()):
            raise ValueError("an expanding IN (...) has no fixed SQL text: compare with = ANY(:list) instead")
        # Values written into the statement itself; a bindparam without one must be passed.
        return cls(str(compiled), {name: value for name, value in compiled.params.items() if value is not None})


@dataclass(frozen=True)
class Query:
    statement: Statement
    params: Mapping[str, Any] = field(default_factory=dict)
    rows: Literal["one", "all"] = "one"

    def parameters(self) -> Mapping[str, Any]:
        return {**self.statement.defaults, **self.params} if self.statement.defaults else self.params


Row = Mapping[str, Any]
# Yields queries, receives a row (or None) or a list of rows, returns the answer.
Operation = Generator[Query, Any, Any]
