"""Mixed traffic against the whole stack through nginx: one user class per backend, one for
the static assets nginx serves itself.

Run settings (users, rates, duration, thresholds) live in loadtest/locust.conf and
loadtest/profiles/*.conf; the host comes from the command line (``make loadtest`` sets it
to the stack's nginx). Select workloads with tags: ``--tags io cpu``.
"""

from __future__ import annotations

import random
import ssl
import urllib.error
import urllib.request
import uuid

from locust import FastHttpUser, between, tag, task
from locust.exception import StopUser

from loadtest import gate  # noqa: F401  (registers the CI gate's options and listeners)
from loadtest.checks import check, check_created, check_db, check_error, check_page, check_replayed, check_same_order

ORDER = {"sku": "TS-1001", "quantity": 2, "unit_price_cents": 1999, "customer_email": "ada@example.com"}
BAD_ORDER = {"sku": "not a sku", "quantity": 0, "unit_price_cents": -1, "customer_email": "nope"}
PAGE_LIMIT = 5


def new_order() -> dict:
    """A valid order that differs from the last one: a read-back or a replay that returns
    another order's values is then caught by its fields, not only by its id."""
    return {**ORDER, "sku": f"TS-{random.randint(1000, 9999)}", "quantity": random.randint(1, 9)}


class ContractUser(FastHttpUser):
    """The contract's workloads; each backend's user only sets the prefix. Weights follow
    what a typical API sees: mostly I/O-bound reads, some CPU, some writes."""

    abstract = True
    prefix = ""
    wait_time = between(0.5, 1.5)
    # Whether the stack serves this half: a project may have one (nginx answers 404 under the
    # other's prefix). Asked once a process, outside Locust's statistics; a half it does not
    # serve gets no users, so its share of the load goes nowhere and nothing fails.
    served: bool | None = None

    def on_start(self) -> None:
        cls = type(self)
        if cls.served is None:
            cls.served = half_is_served(self.host, self.prefix)
        if not cls.served:
            raise StopUser()

    def get_checked(self, path: str, key: str, name: str) -> None:
        """GET ``prefix + path``, grouped under ``prefix + name``; 200 with ``key`` or a failure."""
        with self.client.get(self.prefix + path, name=self.prefix + name, catch_response=True) as resp:
            check(resp, 200, key)

    @tag("io")
    @task(6)
    def io(self) -> None:
        self.get_checked(f"/io?delay_ms={random.choice((20, 50, 100, 200))}", "waited_ms", "/io")

    @tag("cpu")
    @task(2)
    def cpu(self) -> None:
        self.get_checked("/cpu?work=20000", "digest", "/cpu")

    @tag("fanout")
    @task(2)
    def fanout(self) -> None:
        self.get_checked("/fanout?calls=3&delay_ms=50", "elapsed_ms", "/fanout")

    @tag("db")
    @task(1)
    def db(self) -> None:
        """One pg_sleep query on a pooled connection: I/O-bound on the database."""
        delay_ms = random.choice((5, 20, 50))
        with self.client.get(
            f"{self.prefix}/db?delay_ms={delay_ms}", name=f"{self.prefix}/db", catch_response=True
        ) as resp:
            check_db(resp, delay_ms)

    @tag("orders")
    @task(2)
    def order(self) -> None:
        """The order flow: create with a fresh Idempotency-Key, read it back by its Location,
        retry the POST with the same key. One order, the same everywhere: anything else
        (another order_id, another field, a second order) is a failure."""
        sent, key = new_order(), {"Idempotency-Key": str(uuid.uuid4())}
        with self.client.post(f"{self.prefix}/orders", json=sent, headers=key, catch_response=True) as resp:
            first = check_created(resp, sent, self.prefix)
        if first is None:
            return  # recorded as a failure; nothing to read back
        # check_created found the Location to be this path.
        with self.client.get(
            f"{self.prefix}/orders/{first['order_id']}", name=f"{self.prefix}/orders/{{order_id}}", catch_response=True
        ) as resp:
            check_same_order(resp, first)
        with self.client.post(
            f"{self.prefix}/orders", json=sent, headers=key, name=f"{self.prefix}/orders [retry]", catch_response=True
        ) as resp:
            check_replayed(resp, first, self.prefix)

    @tag("orders")
    @task(1)
    def order_pages(self) -> None:
        """The newest orders, a page at a time: newest first, and the next page (when there is
        one, by next_after) older than the first one's last order."""
        with self.client.get(
            f"{self.prefix}/orders?limit={PAGE_LIMIT}", name=f"{self.prefix}/orders", catch_response=True
        ) as resp:
            page = check_page(resp, PAGE_LIMIT)
        if page is None or page["next_after"] is None:
            return
        with self.client.get(
            f"{self.prefix}/orders?limit={PAGE_LIMIT}&after={page['next_after']}",
            name=f"{self.prefix}/orders [next page]",
            catch_response=True,
        ) as resp:
            check_page(resp, PAGE_LIMIT, older_than=page["orders"][-1])

    @tag("orders")
    @task(1)
    def invalid_order(self) -> None:
        # A 422 is the right answer here: counted as a success, anything else as a failure.
        with self.client.post(
            f"{self.prefix}/orders", json=BAD_ORDER, name=f"{self.prefix}/orders [invalid]", catch_response=True
        ) as resp:
            check_error(resp, 422, "validation_error")

    @tag("stream")
    @task(1)
    def stream(self) -> None:
        with self.client.get(
            f"{self.prefix}/stream?chunks=3&interval_ms=50", name=f"{self.prefix}/stream", catch_response=True
        ) as resp:
            lines = (resp.text or "").splitlines()
            if resp.status_code != 200 or len(lines) != 3:
                resp.failure(f"expected 3 NDJSON lines with 200, got {resp.status_code} / {len(lines)} lines")

    @tag("inspect")
    @task(1)
    def inspect(self) -> None:
        with self.client.get(f"{self.prefix}/inspect", catch_response=True) as resp:
            body = check(resp, 200, "request_id")
            if body is not None and body["request_id"] != resp.headers.get("x-request-id"):
                resp.failure("request id in the body differs from the X-Request-ID header")


def half_is_served(host: str, prefix: str) -> bool:
    """Its /health answers (any status but 404: a half that is down is still the stack's)."""
    # The probe checks no certificate, as Locust's own client does (FastHttpUser.insecure).
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    try:
        with urllib.request.urlopen(f"{host}{prefix}/health", timeout=10, context=context):
            return True
    except urllib.error.HTTPError as error:
        return error.code != 404
    except OSError:
        return True  # unreachable: the run's own requests say so, as failures


class AsyncUser(ContractUser):
    """FastAPI behind /async/."""

    weight = 3
    prefix = "/async"


class SyncUser(ContractUser):
    """Flask behind /sync/."""

    weight = 3
    prefix = "/sync"


class StaticUser(FastHttpUser):
    """A browser loading the landing page and its assets, served by nginx alone."""

    weight = 1
    wait_time = between(1, 3)

    @tag("static")
    @task
    def landing_page(self) -> None:
        for path in ("/", "/static/style.css", "/static/app.js", "/static/favicon.svg"):
            with self.client.get(path, catch_response=True) as resp:
                if resp.status_code != 200 or not resp.content:
                    resp.failure(f"expected 200 with a body, got {resp.status_code}")
