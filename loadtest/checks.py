"""Response checks: a wrong status or body is a failure, an expected error is a success."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any
from uuid import UUID


def check(resp: Any, status: int, *keys: str) -> dict | None:
    """Mark ``resp`` (opened with ``catch_response=True``) failed unless it has ``status`` and
    a JSON object body with ``keys``. Returns the parsed body when it passed."""
    if resp.status_code != status:
        resp.failure(f"expected {status}, got {resp.status_code}: {(resp.text or '')[:200]}")
        return None
    try:
        body = json.loads(resp.content)
    except ValueError:
        resp.failure("body is not JSON")
        return None
    missing = [k for k in keys if not isinstance(body, dict) or k not in body]
    if missing:
        resp.failure(f"body lacks {', '.join(missing)}")
        return None
    resp.success()
    return body


def check_error(resp: Any, status: int, code: str) -> None:
    """An expected error: the right status *and* the contract's error shape."""
    body = check(resp, status, "error")
    if body is not None and body["error"].get("code") != code:
        resp.failure(f"expected error code {code}, got {body['error'].get('code')}")


def _judged(resp: Any, body: dict | None, problem: str | None) -> dict | None:
    """``check`` passed with ``body`` (or failed: None); a problem found after it is the verdict."""
    if body is None:
        return None
    if problem:
        resp.failure(problem)
        return None
    return body


def check_db(resp: Any, delay_ms: int) -> dict | None:
    """``GET /db?delay_ms=``: 200, the delay asked for, and a wait at least that long: a query
    that returned sooner did not hold its connection. pg_sleep may return up to 1 ms early (it
    stops once less than that is left), so 1 ms less passes."""
    body = check(resp, 200, "delay_ms", "waited_ms")
    problem = None
    if body is not None:
        waited = body["waited_ms"]
        if body["delay_ms"] != delay_ms:
            problem = f"asked for delay_ms {delay_ms}, the answer says {body['delay_ms']!r}"
        elif not isinstance(waited, (int, float)) or isinstance(waited, bool) or waited < delay_ms - 1:
            problem = f"asked for {delay_ms} ms, waited_ms is {waited!r}"
    return _judged(resp, body, problem)


# --- Orders: the stored order, its Location, idempotent retries, pages ------------------------

ORDER_KEYS = ("order_id", "sku", "quantity", "unit_price_cents", "total_cents", "customer_email", "created_at")
SENT_KEYS = ("sku", "quantity", "unit_price_cents", "customer_email")
INT_KEYS = ("quantity", "unit_price_cents", "total_cents")


def instant(value: Any) -> datetime | None:
    """An ISO 8601 time with its zone (``created_at``), or None."""
    try:
        parsed = datetime.fromisoformat(value)
    except (TypeError, ValueError):
        return None
    return parsed if parsed.tzinfo is not None else None


def order_problem(order: Any, sent: dict | None = None) -> str | None:
    """What is wrong with one order of an answer (None: nothing): every field there and well
    typed, the total computed, and, given the body that was sent, the same values."""
    if not isinstance(order, dict):
        return f"an order is not a JSON object: {str(order)[:100]}"
    missing = [k for k in (*ORDER_KEYS, "served_by") if k not in order]
    if missing:
        return f"order lacks {', '.join(missing)}"
    try:
        UUID(str(order["order_id"]))
    except ValueError:
        return f"order_id {order['order_id']!r} is not a UUID"
    if instant(order["created_at"]) is None:
        return f"created_at {order['created_at']!r} is not an ISO 8601 time with a zone"
    for key in INT_KEYS:
        if type(order[key]) is not int:
            return f"{key} {order[key]!r} is not an integer"
    if order["total_cents"] != order["quantity"] * order["unit_price_cents"]:
        return (
            f"total_cents {order['total_cents']} is not quantity x unit_price_cents "
            f"({order['quantity']} x {order['unit_price_cents']})"
        )
    for key in SENT_KEYS if sent is not None else ():
        if order[key] != sent[key]:
            return f"{key} is {order[key]!r}, sent {sent[key]!r}"
    return None


def difference(order: dict, first: dict) -> str | None:
    """How ``order`` differs from ``first`` (None: the same order). ``served_by`` may differ
    (another worker answered); ``created_at`` is compared as an instant."""
    for key in ORDER_KEYS:
        same = instant(order[key]) == instant(first[key]) if key == "created_at" else order[key] == first[key]
        if not same:
            return f"{key} is {order[key]!r}, the order was created with {first[key]!r}"
    return None


def location_problem(resp: Any, prefix: str, order: dict) -> str | None:
    expected = f"{prefix}/orders/{order['order_id']}"
    location = resp.headers.get("location")
    if location != expected:
        return f"Location is {location!r}, expected {expected!r}"
    return None


def check_created(resp: Any, sent: dict, prefix: str) -> dict | None:
    """A new order: 201, the order that was sent, its Location under ``prefix``, and not said to
    be a replay (its Idempotency-Key, if any, was fresh). Returns the order when it passed."""
    order = check(resp, 201, *ORDER_KEYS)
    problem = None
    if order is not None:
        problem = order_problem(order, sent) or location_problem(resp, prefix, order)
        if problem is None and resp.headers.get("idempotent-replayed") is not None:
            problem = "a new order is marked Idempotent-Replayed: was its fresh Idempotency-Key used before?"
    return _judged(resp, order, problem)


def check_same_order(resp: Any, first: dict) -> dict | None:
    """``GET /orders/{order_id}`` of the order ``first`` (as it was created): 200, the same order."""
    order = check(resp, 200, *ORDER_KEYS)
    problem = None
    if order is not None:
        problem = order_problem(order) or difference(order, first)
    return _judged(resp, order, problem)


def check_replayed(resp: Any, first: dict, prefix: str) -> dict | None:
    """The POST of ``first`` retried with its Idempotency-Key: 201 with the *same* order (a new
    order_id means the retry stored a second order), its Location, marked as a replay."""
    order = check(resp, 201, *ORDER_KEYS)
    problem = None
    if order is not None:
        if order.get("order_id") != first["order_id"]:
            problem = (
                f"a retry with the same Idempotency-Key made a second order: {order.get('order_id')}, "
                f"first {first['order_id']}"
            )
        else:
            problem = order_problem(order) or difference(order, first) or location_problem(resp, prefix, order)
        if problem is None and resp.headers.get("idempotent-replayed") != "true":
            problem = (
                "a retry with the same Idempotency-Key is not marked Idempotent-Replayed: true "
                f"(got {resp.headers.get('idempotent-replayed')!r})"
            )
    return _judged(resp, order, problem)


def page_problem(page: dict, limit: int, older_than: dict | None) -> str | None:
    orders, next_after = page["orders"], page["next_after"]
    if not isinstance(orders, list):
        return "orders is not a list"
    if len(orders) > limit:
        return f"{len(orders)} orders on a page of limit {limit}"
    for order in orders:
        if problem := order_problem(order):
            return problem
    # Newest first: (created_at, order_id) strictly decreasing, the order the keyset pages by
    # (orders made in one instant come by id, from the highest).
    keys = [(instant(o["created_at"]), UUID(str(o["order_id"]))) for o in orders]
    if older_than is not None and keys:
        anchor = (instant(older_than["created_at"]), UUID(str(older_than["order_id"])))
        if not keys[0] < anchor:
            return f"the next page starts with {orders[0]['order_id']}, not older than {older_than['order_id']}"
    for i in range(1, len(keys)):
        if not keys[i] < keys[i - 1]:
            return (
                f"not newest first: order #{i + 1} ({orders[i]['created_at']}, {orders[i]['order_id']}) is not "
                f"older than #{i} ({orders[i - 1]['created_at']}, {orders[i - 1]['order_id']})"
            )
    if next_after is not None:
        if len(orders) < limit:
            return f"next_after is set on a page of {len(orders)} < limit {limit} orders (a short page is the last)"
        if next_after != orders[-1]["order_id"]:
            return f"next_after is {next_after!r}, not the page's last order_id {orders[-1]['order_id']!r}"
    return None


def check_page(resp: Any, limit: int, older_than: dict | None = None) -> dict | None:
    """``GET /orders?limit=``: 200, at most ``limit`` well-formed orders, newest first, and
    ``next_after`` either null or the last order's id on a full page. ``older_than``: the last
    order of the page before, which every order of this one must be older than."""
    page = check(resp, 200, "orders", "next_after")
    return _judged(resp, page, page_problem(page, limit, older_than) if page is not None else None)
