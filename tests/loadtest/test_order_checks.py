"""The load test's database checks (loadtest/checks.py) and the order flow that uses them
(loadtest/locustfile.py): a created order, read back and retried with its Idempotency-Key,
must be one and the same order; a page must be newest first with a consistent next_after.

The checks get hand-made answers, right and wrong. The flow runs the locustfile's own tasks
against ``FakeService``, an in-memory stand-in that answers as the contract says (docs/api.md)
unless it is told to make one mistake: each mistake must end as a Locust failure that says
what went wrong, and the right answers as successes only.
"""

from __future__ import annotations

import json
import uuid
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from geventhttpclient.header import Headers

from loadtest.checks import check_created, check_db, check_page, check_replayed, check_same_order
from loadtest.locustfile import ORDER, AsyncUser, ContractUser, SyncUser
from tests.loadtest.test_checks import FakeResponse, error

T0 = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)


def stored(n: int = 0, **changes: Any) -> dict:
    """The n-th stored order (later n: newer), as the services answer it."""
    order = {
        "order_id": str(uuid.UUID(int=n + 1)),
        **ORDER,
        "total_cents": ORDER["quantity"] * ORDER["unit_price_cents"],
        "created_at": (T0 + timedelta(seconds=n)).isoformat(),
        "served_by": "fastapi-1",
    }
    return {**order, **changes}


def created(order: dict, prefix: str = "/async", replayed: bool = False, **headers: str) -> FakeResponse:
    base = {"Location": f"{prefix}/orders/{order['order_id']}"}
    if replayed:
        base["Idempotent-Replayed"] = "true"
    return FakeResponse(201, order, headers={**base, **headers})


def verdict(resp: FakeResponse) -> str:
    """'success', or the failure's message."""
    name, message = resp.outcome
    return "success" if name == "success" else message


# --- POST /orders with a fresh key -------------------------------------------------------------


def test_a_new_order_as_sent_with_its_location_passes_and_is_returned():
    order = stored()
    resp = created(order)
    assert check_created(resp, ORDER, "/async") == order
    assert resp.calls == [("success", None)]


@pytest.mark.parametrize(
    ("resp", "said"),
    [
        (created(stored(quantity=3, total_cents=3 * 1999)), "quantity is 3, sent 2"),
        (created(stored(sku="TS-9999")), "sku is 'TS-9999', sent 'TS-1001'"),
        (created(stored(total_cents=1)), "total_cents 1 is not quantity x unit_price_cents (2 x 1999)"),
        (created(stored(quantity="2")), "quantity '2' is not an integer"),
        (created(stored(order_id="42")), "order_id '42' is not a UUID"),
        (created(stored(created_at="2026-01-02 03:04:05")), "is not an ISO 8601 time with a zone"),
        (created(stored(created_at="yesterday")), "created_at 'yesterday' is not an ISO 8601 time"),
        (FakeResponse(201, {k: v for k, v in stored().items() if k != "served_by"}), "order lacks served_by"),
        (FakeResponse(201, {"order_id": stored()["order_id"], "total_cents": 3998}), "body lacks sku"),
        # The order is right; where it says it lives is not.
        (created(stored(), prefix="/sync"), "Location is '/sync/orders/"),
        (created(stored(), prefix=""), "expected '/async/orders/"),
        (FakeResponse(201, stored()), "Location is None"),
        # A fresh key answered as a replay: some other request already used it.
        (created(stored(), replayed=True), "a new order is marked Idempotent-Replayed"),
        # The database's 503s are failures, as every other 503 (the status, then the code).
        (FakeResponse(503, error(503, "pool_exhausted")), "expected 201, got 503"),
        (FakeResponse(503, error(503, "database_unavailable")), "database_unavailable"),
        (FakeResponse(409, error(409, "idempotency_conflict")), "expected 201, got 409"),
    ],
    ids=[
        "other-quantity",
        "other-sku",
        "wrong-total",
        "string-quantity",
        "id-not-uuid",
        "naive-time",
        "not-a-time",
        "no-served-by",
        "fields-missing",
        "other-prefix",
        "no-prefix",
        "no-location",
        "fresh-key-replayed",
        "pool-exhausted",
        "database-down",
        "conflict",
    ],
)
def test_a_new_order_that_is_not_what_was_sent_is_a_failure(resp: FakeResponse, said: str):
    assert check_created(resp, ORDER, "/async") is None
    assert said in verdict(resp)


# --- GET /orders/{order_id} --------------------------------------------------------------------


def test_the_same_order_read_back_by_another_worker_passes():
    first = stored()
    # Another worker, and the same instant written with another offset.
    same = {**first, "served_by": "fastapi-2", "created_at": "2026-01-02T04:04:05.678901+01:00"}
    resp = FakeResponse(200, same)
    assert check_same_order(resp, first) == same
    assert resp.calls == [("success", None)]


@pytest.mark.parametrize(
    ("resp", "said"),
    [
        (FakeResponse(200, stored(1)), "order_id is '00000000-0000-0000-0000-000000000002', the order was created"),
        (FakeResponse(200, stored(quantity=4, total_cents=4 * 1999)), "quantity is 4, the order was created with 2"),
        (FakeResponse(200, stored(customer_email="bob@example.com")), "customer_email is 'bob@example.com'"),
        (FakeResponse(200, stored(created_at=(T0 + timedelta(microseconds=1)).isoformat())), "created_at is"),
        (FakeResponse(404, error(404, "not_found")), "expected 200, got 404"),
        (FakeResponse(200, stored(total_cents=0)), "total_cents 0 is not quantity x unit_price_cents"),
    ],
    ids=["another-order", "other-quantity", "other-email", "other-time", "lost", "wrong-total"],
)
def test_an_order_read_back_that_differs_from_the_one_created_is_a_failure(resp: FakeResponse, said: str):
    assert check_same_order(resp, stored()) is None
    assert said in verdict(resp)


# --- The same POST again, with the same Idempotency-Key -------------------------------------


def test_a_replay_of_the_same_order_passes():
    first = stored()
    resp = created({**first, "served_by": "fastapi-2"}, replayed=True)
    assert check_replayed(resp, first, "/async")["order_id"] == first["order_id"]
    assert resp.calls == [("success", None)]


@pytest.mark.parametrize(
    ("resp", "said"),
    [
        # The worst outcome: the retry stored a second order.
        (created(stored(1), replayed=True), "a retry with the same Idempotency-Key made a second order"),
        (created(stored(1)), "made a second order: 00000000-0000-0000-0000-000000000002"),
        (created(stored()), "not marked Idempotent-Replayed: true (got None)"),
        (created(stored(), **{"Idempotent-Replayed": "yes"}), "(got 'yes')"),
        (created(stored(quantity=1, total_cents=1999), replayed=True), "quantity is 1, the order was created with 2"),
        (created(stored(), prefix="/sync", replayed=True), "Location is '/sync/orders/"),
        (FakeResponse(409, error(409, "idempotency_conflict")), "expected 201, got 409"),
        (FakeResponse(200, stored(), headers={"Idempotent-Replayed": "true"}), "expected 201, got 200"),
    ],
    ids=[
        "second-order",
        "second-order-unmarked",
        "unmarked",
        "marked-otherwise",
        "other-values",
        "location",
        "conflict",
        "200",
    ],
)
def test_a_replay_that_is_not_the_first_order_is_a_failure(resp: FakeResponse, said: str):
    assert check_replayed(resp, stored(), "/async") is None
    assert said in verdict(resp)


# --- GET /orders?limit=&after= ------------------------------------------------------------------


def page(orders: list[dict], next_after: str | None = None) -> FakeResponse:
    return FakeResponse(200, {"orders": orders, "next_after": next_after})


@pytest.mark.parametrize(
    ("resp", "older_than"),
    [
        (page([]), None),  # an empty database
        (page([stored(2), stored(1)]), None),  # the last page
        (page([stored(5), stored(4), stored(3)], stored(3)["order_id"]), None),  # more to come
        (page([stored(2), stored(1), stored(0)]), stored(3)),  # a next page
        # One instant, two orders: by id, the highest first (the keyset's own order).
        (page([stored(1, created_at=T0.isoformat()), stored(0)]), None),
    ],
    ids=["empty", "short", "full-with-next", "next-page", "tie-by-id"],
)
def test_a_page_newest_first_with_a_consistent_next_after_passes(resp: FakeResponse, older_than: dict | None):
    assert check_page(resp, 3, older_than) is not None
    assert resp.calls == [("success", None)]


@pytest.mark.parametrize(
    ("resp", "older_than", "said"),
    [
        (page([stored(1), stored(2)]), None, "not newest first: order #2"),
        (page([stored(1), stored(1)]), None, "not newest first"),  # one order twice
        (page([stored(0), stored(1, created_at=T0.isoformat())]), None, "not newest first"),  # tie, ids upwards
        (page([stored(4), stored(3), stored(2), stored(1)]), None, "4 orders on a page of limit 3"),
        (page([stored(3), stored(2), stored(1)], stored(2)["order_id"]), None, "not the page's last order_id"),
        (page([stored(2), stored(1)], stored(1)["order_id"]), None, "next_after is set on a page of 2 < limit 3"),
        (page([], "00000000-0000-0000-0000-000000000001"), None, "next_after is set on a page of 0"),
        (page([stored(3), stored(2)]), stored(3), "the next page starts with 00000000-0000-0000-0000-000000000004"),
        (page([stored(1), {**stored(0), "total_cents": 5}]), None, "total_cents 5 is not"),
        (page([stored(1), "x"]), None, "an order is not a JSON object"),
        (FakeResponse(200, {"orders": {}, "next_after": None}), None, "orders is not a list"),
        (FakeResponse(200, {"orders": []}), None, "body lacks next_after"),
        (FakeResponse(422, error(422, "validation_error")), None, "expected 200, got 422"),
    ],
    ids=[
        "oldest-first",
        "duplicate",
        "tie-wrong-way",
        "over-limit",
        "next-after-not-last",
        "next-after-short",
        "next-after-empty",
        "next-page-overlaps",
        "bad-order",
        "not-an-object",
        "not-a-list",
        "no-next-after",
        "422",
    ],
)
def test_a_page_out_of_order_or_with_a_wrong_next_after_is_a_failure(resp, older_than, said):
    assert check_page(resp, 3, older_than) is None
    assert said in verdict(resp)


# --- GET /db ---------------------------------------------------------------------------------------


def test_a_query_that_held_its_connection_for_the_delay_passes():
    for waited in (20.4, 19.2, 350):  # pg_sleep may stop up to 1 ms early
        resp = FakeResponse(200, {"delay_ms": 20, "waited_ms": waited, "served_by": "flask-1"})
        assert check_db(resp, 20) is not None and resp.calls == [("success", None)]


@pytest.mark.parametrize(
    ("body", "said"),
    [
        ({"delay_ms": 20, "waited_ms": 2.5, "served_by": "1"}, "asked for 20 ms, waited_ms is 2.5"),
        ({"delay_ms": 10, "waited_ms": 25, "served_by": "1"}, "asked for delay_ms 20, the answer says 10"),
        ({"delay_ms": 20, "waited_ms": "25", "served_by": "1"}, "waited_ms is '25'"),
        ({"delay_ms": 20, "served_by": "1"}, "body lacks waited_ms"),
    ],
    ids=["too-short", "other-delay", "not-a-number", "missing"],
)
def test_a_query_that_did_not_wait_is_a_failure(body: dict, said: str):
    resp = FakeResponse(200, body)
    assert check_db(resp, 20) is None
    assert said in verdict(resp)


# --- The locustfile's tasks against a stand-in service ---------------------------------------


class FakeService:
    """The order routes as the contract defines them, in memory, behind one prefix, with at
    most one deliberate ``mistake``. Records every request."""

    def __init__(self, prefix: str, mistake: str | None = None) -> None:
        self.prefix, self.mistake = prefix, mistake
        self.orders: list[dict] = []  # oldest first
        self.keys: dict[str, tuple[dict, str]] = {}  # key -> (order, body)
        self.requests: list[dict] = []

    def _store(self, body: dict) -> dict:
        n = len(self.orders)
        order = stored(n, **body, total_cents=body["quantity"] * body["unit_price_cents"])
        self.orders.append(order)
        return order

    def _created(self, order: dict, replayed: bool) -> FakeResponse:
        location = f"{self.prefix}/orders/{order['order_id']}"
        if self.mistake == "location without the prefix":
            location = f"/orders/{order['order_id']}"
        headers = {"Location": location, **({"Idempotent-Replayed": "true"} if replayed else {})}
        return FakeResponse(201, {**order, "served_by": "w2" if replayed else "w1"}, headers=headers)

    def post(self, path: str, body: dict, headers: dict) -> FakeResponse:
        assert path == f"{self.prefix}/orders"
        key = headers.get("Idempotency-Key")
        raw = json.dumps(body, sort_keys=True)
        if key in self.keys and self.mistake != "retry stores a second order":
            first, first_raw = self.keys[key]
            if first_raw != raw:
                return FakeResponse(409, error(409, "idempotency_conflict"))
            return self._created(first, replayed=self.mistake != "replay not marked")
        order = self._store(body)
        if key is not None:
            self.keys[key] = (order, raw)
        return self._created(order, replayed=False)

    def get(self, path: str) -> FakeResponse:
        url = urlsplit(path)
        assert url.path.startswith(f"{self.prefix}/")
        route = url.path.removeprefix(self.prefix)
        if route == "/db":
            delay = int(parse_qs(url.query)["delay_ms"][0])
            waited = delay / 10 if self.mistake == "db does not wait" else delay + 0.8
            return FakeResponse(200, {"delay_ms": delay, "waited_ms": waited, "served_by": "w1"})
        if route == "/orders":
            query = parse_qs(url.query)
            limit = int(query["limit"][0])
            newest = self.orders[::-1]
            if "after" in query:
                ids = [o["order_id"] for o in newest]
                newest = newest[ids.index(query["after"][0]) + 1 :]
            if self.mistake == "pages oldest first":
                newest = newest[::-1]
            found = newest[:limit]
            more = len(newest) > limit
            if self.mistake == "next_after on the last page" and found:
                more = True
            return FakeResponse(200, {"orders": found, "next_after": found[-1]["order_id"] if more else None})
        order_id = route.removeprefix("/orders/")
        for order in self.orders:
            if order["order_id"] == order_id:
                if self.mistake == "read back another quantity":
                    order = {**order, "quantity": order["quantity"] + 1}
                    order["total_cents"] = order["quantity"] * order["unit_price_cents"]
                return FakeResponse(200, {**order, "served_by": "w3"})
        return FakeResponse(404, error(404, "not_found"))


class FakeClient:
    """What a task calls ``self.client``: get/post with catch_response, as a context manager."""

    def __init__(self, service: FakeService) -> None:
        self.service = service
        self.responses: list[tuple[str, str, FakeResponse]] = []  # (method, name, response)

    @contextmanager
    def _answer(self, method: str, path: str, resp: FakeResponse, name: str | None, **request: Any):
        assert request.pop("catch_response") is True
        self.service.requests.append({"method": method, "path": path, "name": name or path, **request})
        self.responses.append((method, name or path, resp))
        yield resp

    def get(self, path: str, name: str | None = None, **kw: Any):
        return self._answer("GET", path, self.service.get(path), name, **kw)

    def post(self, path: str, json: dict, headers: dict | None = None, name: str | None = None, **kw: Any):
        resp = self.service.post(path, json, headers or {})
        return self._answer("POST", path, resp, name, json=json, headers=headers, **kw)


def run(user_class: type[ContractUser], task: str, service: FakeService, times: int = 1) -> FakeClient:
    user = user_class.__new__(user_class)  # no Locust environment: only the task's own code runs
    user.client = FakeClient(service)
    for _ in range(times):
        getattr(user_class, task)(user)
    return user.client


@pytest.mark.parametrize("user_class", [AsyncUser, SyncUser])
def test_the_order_flow_against_a_correct_service_is_three_successes_and_one_order(user_class):
    service = FakeService(user_class.prefix)
    client = run(user_class, "order", service)
    assert [verdict(resp) for _, _, resp in client.responses] == ["success"] * 3
    p = user_class.prefix
    post, read, retry = service.requests
    assert (post["method"], post["name"]) == ("POST", f"{p}/orders")
    # Read back where the Location said, grouped under one name for every order.
    assert read["path"] == f"{p}/orders/{service.orders[0]['order_id']}"
    assert read["name"] == f"{p}/orders/{{order_id}}"
    # The retry is the same request: the same body and the same, fresh, key.
    assert (retry["method"], retry["name"], retry["json"]) == ("POST", f"{p}/orders [retry]", post["json"])
    assert retry["headers"] == post["headers"]
    assert len(post["headers"]["Idempotency-Key"]) >= 16
    assert len(service.orders) == 1


def test_each_flow_uses_a_fresh_key_and_a_body_of_its_own():
    service = FakeService("/async")
    run(AsyncUser, "order", service, times=20)
    posts = [r for r in service.requests if r["name"] == "/async/orders"]
    assert len({r["headers"]["Idempotency-Key"] for r in posts}) == 20
    assert len({json.dumps(r["json"], sort_keys=True) for r in posts}) > 1
    assert len(service.orders) == 20


@pytest.mark.parametrize(
    ("mistake", "failed", "said"),
    [
        ("retry stores a second order", "/async/orders [retry]", "made a second order"),
        ("replay not marked", "/async/orders [retry]", "not marked Idempotent-Replayed"),
        ("read back another quantity", "/async/orders/{order_id}", "the order was created with"),
        ("location without the prefix", "/async/orders", "Location is '/orders/"),
    ],
)
def test_the_order_flow_fails_on_each_mistake_of_the_service(mistake: str, failed: str, said: str):
    client = run(AsyncUser, "order", FakeService("/async", mistake))
    failures = [(name, verdict(resp)) for _, name, resp in client.responses if verdict(resp) != "success"]
    assert len(failures) == 1 and failures[0][0] == failed and said in failures[0][1], failures


def test_the_flow_stops_after_a_failed_create():
    """A 503 (a full pool) is a failure like any other 503; with no order there is nothing to
    read back or retry, and nothing else is recorded."""
    service = FakeService("/sync")
    service.post = lambda *_: FakeResponse(503, error(503, "pool_exhausted"), headers={"Retry-After": "1"})
    client = run(SyncUser, "order", service)
    assert [(m, n) for m, n, _ in client.responses] == [("POST", "/sync/orders")]
    assert "expected 201, got 503" in verdict(client.responses[0][2])


@pytest.mark.parametrize("user_class", [AsyncUser, SyncUser])
def test_the_pages_task_reads_two_pages_when_there_are_more(user_class):
    service = FakeService(user_class.prefix)
    run(user_class, "order", service, times=8)  # 8 orders: more than a page
    client = run(user_class, "order_pages", service)
    assert [verdict(resp) for _, _, resp in client.responses] == ["success", "success"]
    first, second = service.requests[-2:]
    p = user_class.prefix
    assert (first["name"], second["name"]) == (f"{p}/orders", f"{p}/orders [next page]")
    assert "after=" in second["path"]


def test_the_pages_task_on_an_empty_service_reads_one_page():
    client = run(AsyncUser, "order_pages", FakeService("/async"))
    assert [(n, verdict(r)) for _, n, r in client.responses] == [("/async/orders", "success")]


@pytest.mark.parametrize(
    ("mistake", "said"),
    [("pages oldest first", "not newest first"), ("next_after on the last page", "next_after is set on a page of")],
)
def test_the_pages_task_fails_on_a_wrong_page(mistake: str, said: str):
    service = FakeService("/async", mistake)
    run(AsyncUser, "order", service, times=3)  # fewer than a page
    client = run(AsyncUser, "order_pages", service)
    assert said in verdict(client.responses[0][2])


def test_the_db_task_checks_the_wait():
    client = run(SyncUser, "db", FakeService("/sync"))
    assert [(n, verdict(r)) for _, n, r in client.responses] == [("/sync/db", "success")]
    client = run(SyncUser, "db", FakeService("/sync", "db does not wait"))
    assert "waited_ms is" in verdict(client.responses[0][2])


def test_locust_response_headers_ignore_case():
    """What the checks assume of FastHttpUser's responses (geventhttpclient's Headers), and
    FakeResponse copies: a header is found whatever case either side writes it in."""
    headers = Headers()
    headers.add("Location", "/async/orders/1")
    headers.add("idempotent-replayed", "true")
    assert headers.get("location") == "/async/orders/1"
    assert headers.get("Idempotent-Replayed") == "true"
