"""The references twinstack's order routes are measured against (bench/dbpath.py, claim 13):
the same routes answering the same JSON, written two ways for each framework, each short and
plain, run under the pool's own gunicorn.conf.py (``lab.pool(..., app="bench.db_apps:...")``).

- The raw driver: psycopg 3 and its pool, hand-written SQL, autocommit (one round trip a
  request; a replayed Idempotency-Key, two).
- The same libraries, plainly: SQLAlchemy 2 Core as its documentation shows it, a Table and an
  engine per worker, ``engine.connect()`` to read and ``engine.begin()`` to write.

Each worker opens its own connections (gunicorn loads the app after the fork):
``TWINSTACK_BENCH_DB_POOL_SIZE`` of them (no overflow) to ``TWINSTACK_DATABASE_URL``. The routes:
``GET /health``; ``GET /orders/{id}`` (404 when there is none); ``POST /orders`` (201; an
Idempotency-Key is honoured by ``INSERT ... ON CONFLICT (idempotency_key) DO NOTHING RETURNING``,
then a ``SELECT`` on conflict; no body digest, so no 409); ``GET /orders?limit=N`` (newest
first, ``{"orders": [...], "next_after": ...}``). An order is twinstack's StoredOrder: order_id,
sku, quantity, unit_price_cents, total_cents, customer_email, created_at, served_by.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Annotated, Any

from fastapi import FastAPI, Header, HTTPException, Query
from flask import Flask, abort, request
from pydantic import BaseModel
from sqlalchemy import BigInteger, Column, DateTime, Integer, MetaData, String, Table, Uuid, select

POOL_SIZE = "TWINSTACK_BENCH_DB_POOL_SIZE"
COLUMNS = "id, sku, quantity, unit_price_cents, total_cents, customer_email, created_at"
GET = f"SELECT {COLUMNS} FROM orders WHERE id = %s"
PAGE = f"SELECT {COLUMNS} FROM orders ORDER BY created_at DESC, id DESC LIMIT %s"
INSERT = (
    "INSERT INTO orders (id, sku, quantity, unit_price_cents, total_cents, customer_email, idempotency_key)"
    f" VALUES (gen_random_uuid(), %s, %s, %s, %s, %s, %s) ON CONFLICT (idempotency_key) DO NOTHING RETURNING {COLUMNS}"
)
REPLAYED = f"SELECT {COLUMNS} FROM orders WHERE idempotency_key = %s"


class NewOrder(BaseModel):
    sku: str
    quantity: int
    unit_price_cents: int
    customer_email: str


def _url() -> str:
    return os.environ["TWINSTACK_DATABASE_URL"]


def _size() -> int:
    return int(os.environ.get(POOL_SIZE, "1"))


def order(row: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "order_id": str(row["id"]), "sku": row["sku"], "quantity": row["quantity"],
        "unit_price_cents": row["unit_price_cents"], "total_cents": row["total_cents"],
        "customer_email": row["customer_email"], "created_at": row["created_at"].isoformat(),
        "served_by": str(os.getpid()),
    }  # fmt: skip


def page(rows: Sequence[Mapping[str, Any]], limit: int) -> dict[str, Any]:
    """``limit + 1`` rows fetched: one more than the page says whether there is a next one."""
    found = [order(row) for row in rows[:limit]]
    return {"orders": found, "next_after": found[-1]["order_id"] if len(rows) > limit else None}


def values(body: Mapping[str, Any], key: str | None) -> tuple:
    total = body["quantity"] * body["unit_price_cents"]
    return (body["sku"], body["quantity"], body["unit_price_cents"], total, body["customer_email"], key)


# --- the raw driver -------------------------------------------------------------------------------
def fastapi_raw() -> FastAPI:
    from psycopg.rows import dict_row
    from psycopg_pool import AsyncConnectionPool

    pool = AsyncConnectionPool(
        _url(), min_size=_size(), max_size=_size(), open=False, kwargs={"autocommit": True, "row_factory": dict_row}
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await pool.open(wait=True)
        yield
        await pool.close()

    app = FastAPI(lifespan=lifespan)
    app.get("/health")(_health)

    @app.get("/orders/{order_id}")
    async def get_order(order_id: uuid.UUID) -> dict[str, Any]:
        async with pool.connection() as conn:
            row = await (await conn.execute(GET, (order_id,))).fetchone()
        if row is None:
            raise HTTPException(404, "No such order.")
        return order(row)

    @app.post("/orders", status_code=201)
    async def post_order(body: NewOrder, key: Annotated[str | None, Header(alias="Idempotency-Key")] = None) -> dict:
        async with pool.connection() as conn:
            row = await (await conn.execute(INSERT, values(body.model_dump(), key))).fetchone()
            if row is None:
                row = await (await conn.execute(REPLAYED, (key,))).fetchone()
        return order(row)

    @app.get("/orders")
    async def list_orders(limit: Annotated[int, Query(ge=1, le=100)] = 20) -> dict[str, Any]:
        async with pool.connection() as conn:
            rows = await (await conn.execute(PAGE, (limit + 1,))).fetchall()
        return page(rows, limit)

    return app


def flask_raw() -> Flask:
    from psycopg.rows import dict_row
    from psycopg_pool import ConnectionPool

    pool = ConnectionPool(
        _url(), min_size=_size(), max_size=_size(), open=True, kwargs={"autocommit": True, "row_factory": dict_row}
    )
    pool.wait()  # connected before the worker serves, as the FastAPI app is once its lifespan has run
    app = Flask(__name__)
    app.get("/health")(_flask_health)

    @app.get("/orders/<uuid:order_id>")
    def get_order(order_id: uuid.UUID) -> dict[str, Any]:
        with pool.connection() as conn:
            row = conn.execute(GET, (order_id,)).fetchone()
        if row is None:
            abort(404)
        return order(row)

    @app.post("/orders")
    def post_order() -> tuple[dict[str, Any], int]:
        key = request.headers.get("Idempotency-Key")
        with pool.connection() as conn:
            row = conn.execute(INSERT, values(request.get_json(), key)).fetchone()
            if row is None:
                row = conn.execute(REPLAYED, (key,)).fetchone()
        return order(row), 201

    @app.get("/orders")
    def list_orders() -> dict[str, Any]:
        limit = min(max(request.args.get("limit", 20, type=int), 1), 100)
        with pool.connection() as conn:
            return page(conn.execute(PAGE, (limit + 1,)).fetchall(), limit)

    return app


# --- the same libraries, plainly: SQLAlchemy 2 Core ---------------------------------------------
orders = Table(
    "orders", MetaData(),
    Column("id", Uuid, primary_key=True, default=uuid.uuid4), Column("sku", String(32)), Column("quantity", Integer),
    Column("unit_price_cents", BigInteger), Column("total_cents", BigInteger), Column("customer_email", String(254)),
    Column("created_at", DateTime(timezone=True)), Column("idempotency_key", String(255)),
)  # fmt: skip
STORED = [c for c in orders.c if c.name != "idempotency_key"]


def _sqlalchemy_url() -> str:
    return "postgresql+psycopg://" + _url().split("://", 1)[1]


def _insert(body: Mapping[str, Any], key: str | None):
    from sqlalchemy.dialects.postgresql import insert

    row = dict(body, total_cents=body["quantity"] * body["unit_price_cents"], idempotency_key=key)
    statement = insert(orders).values(**row).on_conflict_do_nothing(index_elements=["idempotency_key"])
    return statement.returning(*STORED)


def fastapi_plain() -> FastAPI:
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(_sqlalchemy_url(), pool_size=_size(), max_overflow=0)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        # Its pool filled at start, as twinstack's and the raw driver's are: SQLAlchemy opens
        # connections as they are first wanted, and a warm-up on a busy machine may not have
        # wanted them all at once, which would count sessions opened while measured.
        async with AsyncExitStack() as held:
            for _ in range(_size()):
                await held.enter_async_context(engine.connect())
        yield
        await engine.dispose()

    app = FastAPI(lifespan=lifespan)
    app.get("/health")(_health)

    @app.get("/orders/{order_id}")
    async def get_order(order_id: uuid.UUID) -> dict[str, Any]:
        async with engine.connect() as conn:
            row = (await conn.execute(select(*STORED).where(orders.c.id == order_id))).mappings().first()
        if row is None:
            raise HTTPException(404, "No such order.")
        return order(row)

    @app.post("/orders", status_code=201)
    async def post_order(body: NewOrder, key: Annotated[str | None, Header(alias="Idempotency-Key")] = None) -> dict:
        async with engine.begin() as conn:
            row = (await conn.execute(_insert(body.model_dump(), key))).mappings().first()
            if row is None:
                row = (await conn.execute(select(*STORED).where(orders.c.idempotency_key == key))).mappings().first()
        return order(row)

    @app.get("/orders")
    async def list_orders(limit: Annotated[int, Query(ge=1, le=100)] = 20) -> dict[str, Any]:
        newest = select(*STORED).order_by(orders.c.created_at.desc(), orders.c.id.desc()).limit(limit + 1)
        async with engine.connect() as conn:
            rows = (await conn.execute(newest)).mappings().all()
        return page(rows, limit)

    return app


def flask_plain() -> Flask:
    from sqlalchemy import create_engine

    engine = create_engine(_sqlalchemy_url(), pool_size=_size(), max_overflow=0)
    app = Flask(__name__)
    app.get("/health")(_flask_health)

    @app.get("/orders/<uuid:order_id>")
    def get_order(order_id: uuid.UUID) -> dict[str, Any]:
        with engine.connect() as conn:
            row = conn.execute(select(*STORED).where(orders.c.id == order_id)).mappings().first()
        if row is None:
            abort(404)
        return order(row)

    @app.post("/orders")
    def post_order() -> tuple[dict[str, Any], int]:
        key = request.headers.get("Idempotency-Key")
        with engine.begin() as conn:
            row = conn.execute(_insert(request.get_json(), key)).mappings().first()
            if row is None:
                row = conn.execute(select(*STORED).where(orders.c.idempotency_key == key)).mappings().first()
        return order(row), 201

    @app.get("/orders")
    def list_orders() -> dict[str, Any]:
        limit = min(max(request.args.get("limit", 20, type=int), 1), 100)
        newest = select(*STORED).order_by(orders.c.created_at.desc(), orders.c.id.desc()).limit(limit + 1)
        with engine.connect() as conn:
            return page(conn.execute(newest).mappings().all(), limit)

    return app


async def _health() -> dict[str, str]:
    return {"status": "ok"}


def _flask_health() -> dict[str, str]:
    return {"status": "ok"}
