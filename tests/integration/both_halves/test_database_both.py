"""One database for both halves: an order written through one is read through the other, and
retries of one key sent to both at once make one order."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
import psycopg
import pytest

from tests.integration.conftest import Stack
from tests.integration.test_database import database_url, post
from tests.support import PREFIXES

pytestmark = pytest.mark.integration


def test_an_order_written_through_one_half_is_read_through_the_other(client: httpx.Client):
    for writer, reader in (PREFIXES, PREFIXES[::-1]):
        created = post(client, writer, str(uuid.uuid4()))
        assert created.status_code == 201, created.text
        order_id = created.json()["order_id"]
        assert created.headers["location"] == f"{writer}/orders/{order_id}"
        read = client.get(f"{reader}/orders/{order_id}")
        assert read.status_code == 200, read.text
        assert {**read.json(), "served_by": None} == {**created.json(), "served_by": None}
        assert "sql;dur=" in read.headers["server-timing"]
        page = client.get(f"{reader}/orders", params={"limit": 100})
        assert order_id in [o["order_id"] for o in page.json()["orders"]]


def test_concurrent_retries_through_both_halves_make_one_order(stack: Stack, client: httpx.Client):
    """A client that retries (timeouts, a lost answer) sends the same key again, perhaps to the
    other half, perhaps while the first is still running: one row, one order id for all."""
    for attempt in range(3):
        key = f"race-{attempt}-{uuid.uuid4()}"
        with ThreadPoolExecutor(12) as pool:
            answers = list(pool.map(lambda i, key=key: post(client, PREFIXES[i % 2], key), range(12)))
        assert {a.status_code for a in answers} == {201}, [a.text for a in answers]
        assert len({a.json()["order_id"] for a in answers}) == 1
        assert sum("idempotent-replayed" not in a.headers for a in answers) == 1
        with psycopg.connect(database_url(stack)) as conn:
            assert conn.execute("SELECT count(*) FROM orders WHERE idempotency_key = %s", (key,)).fetchone()[0] == 1
