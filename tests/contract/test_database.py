"""The database routes of both services against the tests' real PostgreSQL (tests/conftest.py):
one schema, written by one service and read by the other; idempotent retries; pages; and the
two 503s (a full pool, a database that is down), each the same answer from both services."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator

import psycopg
import pytest

from tests.contract.parity import SIDES, masked
from tests.contract.test_contract import JSON, ORDER, REQUEST_ID, assert_same_headers, pair
from tests.support import free_port
from twinstack_contract.models import ErrorBody, OrderPage, StoredOrder


def post(call, body: dict, key: str | None = None):
    headers = {**JSON, "X-Request-ID": REQUEST_ID, **({"Idempotency-Key": key} if key else {})}
    return call("POST", "/orders", json.dumps(body).encode(), headers)


def rows_with_key(url: str, key: str) -> int:
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT count(*) FROM orders WHERE idempotency_key = %s", (key,)).fetchone()[0]


@pytest.fixture
def both(settings_kwargs: dict) -> Iterator[dict]:
    with pair(settings_kwargs) as calls:
        yield calls


def test_an_order_written_through_one_service_is_read_through_the_other(both: dict):
    for writer, reader in (SIDES, SIDES[::-1]):
        created = post(both[writer], {**ORDER, "sku": f"X-{writer.upper()}"})
        assert created.status == 201, created.body
        assert created.headers["location"] == f"/orders/{created.body['order_id']}"
        read = both[reader]("GET", created.headers["location"], None, {"X-Request-ID": REQUEST_ID})
        assert read.status == 200, read.body
        assert masked(read.body, StoredOrder, reader, {}) == {**created.body, "served_by": read.body["served_by"]}
        assert read.body["total_cents"] == ORDER["quantity"] * ORDER["unit_price_cents"]
        assert "sql;dur=" in read.headers["server-timing"]


def test_a_retried_post_returns_the_first_order_and_stores_one_row(both: dict, database_url: str):
    key = f"retry-{uuid.uuid4()}"
    first = post(both["fastapi"], ORDER, key)
    assert first.status == 201 and "idempotent-replayed" not in first.headers
    # Retried on the same service and on the other: the same order, said to be a replay.
    for side in ("fastapi", "flask", "flask"):
        again = post(both[side], ORDER, key)
        assert again.status == 201, again.body
        assert again.body["order_id"] == first.body["order_id"]
        assert again.headers["location"] == first.headers["location"]
        assert again.headers["idempotent-replayed"] == "true"
    assert rows_with_key(database_url, key) == 1


def test_a_reused_key_with_another_body_is_409_on_both(both: dict, database_url: str):
    key = f"reused-{uuid.uuid4()}"
    assert post(both["flask"], ORDER, key).status == 201
    answers = [post(both[side], {**ORDER, "quantity": 3}, key) for side in SIDES]
    assert [a.status for a in answers] == [409, 409], [a.body for a in answers]
    assert_same_headers(*answers)
    assert masked(answers[0].body, ErrorBody, "fastapi") == masked(answers[1].body, ErrorBody, "flask")
    assert answers[0].body["error"]["code"] == "idempotency_conflict"
    assert rows_with_key(database_url, key) == 1


def test_pages_walk_every_order_once_newest_first_whichever_service_serves_each(both: dict, database_url: str):
    mine = {post(both[SIDES[i % 2]], {**ORDER, "sku": f"PAGE-{i}"}).body["order_id"] for i in range(7)}
    seen: list[dict] = []
    after, turn = None, 0
    while True:
        query = "/orders?limit=3" + (f"&after={after}" if after else "")
        page = both[SIDES[turn % 2]]("GET", query, None, {})
        turn += 1
        assert page.status == 200, page.body
        OrderPage.model_validate(page.body)
        assert len(page.body["orders"]) <= 3
        seen += page.body["orders"]
        after = page.body["next_after"]
        if after is None:
            break
        assert after == page.body["orders"][-1]["order_id"]
    ids = [o["order_id"] for o in seen]
    assert len(ids) == len(set(ids)), "an order appeared on two pages"
    assert mine <= set(ids)
    keys = [(o["created_at"], o["order_id"]) for o in seen]
    assert keys == sorted(keys, reverse=True), "not newest first"
    with psycopg.connect(database_url) as conn:
        assert len(ids) == conn.execute("SELECT count(*) FROM orders").fetchone()[0]


def holding(url: str) -> int:
    """Connections of this database running a /db wait (pg_sleep) now."""
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query LIKE '%%pg_sleep%%'"
            " AND pid <> pg_backend_pid()"
        ).fetchone()[0]


def test_a_full_pool_answers_503_pool_exhausted_after_the_pool_timeout(settings_kwargs: dict, database_url: str):
    """One connection per worker, held by a slow query: the next request waits the pool
    timeout, then gets 503 JSON with Retry-After (not the holder's connection once it is
    free: that would be a 200), never a hang or a 500."""
    one = {"pool_size": 1}
    settings = {**settings_kwargs, "db_pool_timeout_s": 0.3}
    with pair({**settings, "db_pool": one}) as calls:
        answers = {}
        for side in SIDES:
            holder = threading.Thread(target=calls[side], args=("GET", "/db?delay_ms=2000", None, {}))
            holder.start()
            deadline = time.monotonic() + 10
            while not holding(database_url):  # the holder has the connection
                assert time.monotonic() < deadline, "the holder never started its query"
                time.sleep(0.01)
            started = time.monotonic()
            answers[side] = calls[side]("GET", "/db?delay_ms=1", None, {"X-Request-ID": REQUEST_ID})
            waited = time.monotonic() - started
            holder.join()
            assert waited >= 0.29, (side, waited)  # the pool timeout, less a timer's rounding
        a, b = answers["fastapi"], answers["flask"]
        assert (a.status, b.status) == (503, 503), (a.body, b.body)
        assert_same_headers(a, b)
        assert a.headers["retry-after"] == "1"
        assert masked(a.body, ErrorBody, "fastapi") == masked(b.body, ErrorBody, "flask")
        assert a.body["error"]["code"] == "pool_exhausted"
        # The connection is back: the next request is served.
        assert calls["fastapi"]("GET", "/db?delay_ms=1", None, {}).status == 200
        assert calls["flask"]("GET", "/db?delay_ms=1", None, {}).status == 200


@pytest.fixture
def both_database_down(settings_kwargs: dict) -> Iterator[dict]:
    """Both apps with a database that refuses connections (a port nothing listens on)."""
    down = f"postgresql://twinstack:x@127.0.0.1:{free_port()}/twinstack"
    with pair({**settings_kwargs, "database_url": down}) as calls:
        yield calls


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/ready", 503),
        ("GET", "/db?delay_ms=1", 503),
        ("POST", "/orders", 503),
        ("GET", f"/orders/{uuid.UUID(int=7)}", 503),
        ("GET", "/orders", 503),
        ("GET", f"/jobs/{uuid.UUID(int=7).hex}", 503),
        # Liveness and the workloads that need no database are unaffected.
        ("GET", "/health", 200),
        ("GET", "/io?delay_ms=1", 200),
        ("GET", "/cpu?work=10", 200),
        # Bad input is still refused first, before any connection is tried.
        ("GET", "/orders/not-a-uuid", 422),
        ("POST", "/orders?bad", 422),
        ("GET", "/jobs/not-a-job-id", 404),
    ],
)
def test_database_down_same_answer(both_database_down: dict, method: str, path: str, status: int):
    body = json.dumps(ORDER if "bad" not in path else {"sku": ""}).encode() if method == "POST" else None
    headers = {**JSON, "X-Request-ID": REQUEST_ID} if body else {"X-Request-ID": REQUEST_ID}
    a = both_database_down["fastapi"](method, path, body, headers)
    b = both_database_down["flask"](method, path, body, headers)
    assert (a.status, b.status) == (status, status), (a.body, b.body)
    assert_same_headers(a, b)
    if status == 503:
        assert masked(a.body, ErrorBody, "fastapi") == masked(b.body, ErrorBody, "flask")
        assert a.body["error"]["code"] == "database_unavailable"
        assert a.headers["retry-after"] == "1"


def test_the_pool_is_in_the_metrics(both: dict):
    for side in SIDES:
        assert both[side]("GET", "/db?delay_ms=1", None, {}).status == 200
        text = both[side]("GET", "/metrics", None, {}).body
        service = "fastapi" if side == "fastapi" else "flask"
        assert f'twinstack_db_connections{{service="{service}",state="open"}}' in text
        assert f'twinstack_db_pool_limit{{limit="pool_size",service="{service}"}}' in text or (
            f'twinstack_db_pool_limit{{service="{service}",limit="pool_size"}}' in text
        )
        assert f'twinstack_db_pool_wait_seconds_count{{service="{service}"}}' in text


def test_a_job_accepted_by_one_service_is_read_by_the_other(both: dict):
    """Jobs are rows of one table: any worker of either service answers for any job."""
    for writer, reader in (SIDES, SIDES[::-1]):
        accepted = both[writer]("POST", "/jobs", b'{"delay_ms": 1}', {**JSON, "X-Request-ID": REQUEST_ID})
        assert accepted.status == 202, accepted.body
        deadline = time.monotonic() + 10
        while (read := both[reader]("GET", f"/jobs/{accepted.body['job_id']}", None, {})).body["status"] != "done":
            assert read.status == 200 and time.monotonic() < deadline, read.body
            time.sleep(0.05)
        assert read.body["served_by"] == accepted.body["served_by"]
