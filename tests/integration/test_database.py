"""PostgreSQL in the running stack, through nginx: one schema for both halves, idempotent
retries under concurrency, the connection budget under load, and faults of the database
itself (stopped, SIGKILLed under load) that lose no order and need no worker restarted.
Every load loop is bounded in time and count, and sends to 127.0.0.1 only."""

from __future__ import annotations

import json
import os
import re
import signal
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

import httpx
import psycopg
import pytest

from tests.integration.conftest import ONE_CLIENT_LOAD, Stack, running_stack
from tests.support import HALVES, PREFIXES, sessions_opened, wait_until

pytestmark = pytest.mark.integration

ORDER = {"sku": "DB-1", "quantity": 2, "unit_price_cents": 450, "customer_email": "ada@example.com"}
ASYNC_WORKERS, SYNC_WORKERS = 2, 2
# This file's own stack: both pools' connections are the budget (twinstack_db/budget.py).
POOLS = dict(
    TWINSTACK_ASYNC_WORKERS=str(ASYNC_WORKERS),
    TWINSTACK_SYNC_WORKERS=str(SYNC_WORKERS),
    TWINSTACK_ASYNC_DB_POOL_SIZE="6",
    TWINSTACK_SYNC_DB_POOL_SIZE="3",
)
CONNECTIONS = {"/async": ASYNC_WORKERS * 6, "/sync": SYNC_WORKERS * 3}
ASYNC_CONNECTIONS = CONNECTIONS["/async"]
BUDGET = sum(CONNECTIONS[prefix] for prefix in PREFIXES)  # the halves this project has


def database_url(stack: Stack) -> str:
    return json.loads(stack.native("env").stdout)["TWINSTACK_DATABASE_URL"]


def post(client: httpx.Client, prefix: str, key: str, body: dict = ORDER) -> httpx.Response:
    return client.post(f"{prefix}/orders", json=body, headers={"Idempotency-Key": key})


@pytest.fixture(scope="module")
def db_stack(tmp_path_factory: pytest.TempPathFactory, nginx_bin: str):
    limits = dict(ONE_CLIENT_LOAD, TWINSTACK_ASYNC_DB_MAX_INFLIGHT_PER_CLIENT="1000", TWINSTACK_CLIENT_MAX_CONNS="4000")
    with running_stack(tmp_path_factory.mktemp("db"), **limits, **POOLS, TWINSTACK_SYNC_MAX_INFLIGHT="400") as own:
        yield own


def client_connections(url: str) -> int:
    with psycopg.connect(url, application_name="test-observer") as conn:
        return conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'twinstack-%%'"
        ).fetchone()[0]


@pytest.mark.timeout(120)
def test_connections_never_exceed_the_budget_under_load(db_stack: Stack):
    """200 clients on /async/db and 40 on /sync/db (those of the halves present), far more than
    the connections: the pools are the limit. pg_stat_activity, sampled throughout, never shows
    more than the budget, and the largest pool does reach its own limit (for the async one: the
    knee is the pool, not the event loop)."""
    url, stop, peak = database_url(db_stack), threading.Event(), Counter()
    statuses: Counter[tuple[str, int]] = Counter()

    def load(prefix: str) -> None:
        with httpx.Client(base_url=db_stack.base_url, timeout=30) as c:
            while not stop.is_set():
                r = c.get(f"{prefix}/db", params={"delay_ms": 50})
                statuses[prefix, r.status_code] += 1

    clients = {"/async": 200, "/sync": 40}
    threads = [threading.Thread(target=load, args=(p,)) for p in PREFIXES for _ in range(clients[p])]
    for t in threads:
        t.start()
    try:
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline:
            peak["all"] = max(peak["all"], client_connections(url))
            time.sleep(0.05)
    finally:
        stop.set()
        for t in threads:
            t.join(60)
    assert max(CONNECTIONS[p] for p in PREFIXES) <= peak["all"] <= BUDGET, (peak, statuses)
    # A full pool queues for at most the pool timeout (5 s), here far less: all were served.
    assert {s for _, s in statuses} == {200}, statuses


# Clients per prefix: below, at and past what the pools hold (ASYNC_CONNECTIONS over both async
# workers, 6 on the sync side), the last far past it, where requests wait for a connection.
STEADY_CLIENTS = (2, ASYNC_CONNECTIONS, 4 * ASYNC_CONNECTIONS)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("clients", STEADY_CLIENTS)
def test_no_session_is_opened_under_steady_load(db_stack: Stack, clients: int):
    """Every database route on each prefix, through nginx, below, at and past the pools'
    size: once warm, PostgreSQL counts no new session (pg_stat_database.sessions), and every
    request is served. A pool that opened a session per request past its size (an overflow
    connection closed on return, as SQLAlchemy's does) opens hundreds here."""
    url = database_url(db_stack)
    with db_stack.client() as client:
        ids = {p: post(client, p, str(uuid.uuid4())).json()["order_id"] for p in PREFIXES}
    statuses: Counter[tuple[str, int]] = Counter()
    stop = threading.Event()

    def load(i: int) -> None:
        prefix = PREFIXES[i % len(PREFIXES)]
        with httpx.Client(base_url=db_stack.base_url, timeout=30) as c:
            for n in range(10_000):  # bounded; the stop event ends it first
                if stop.is_set():
                    return
                route = n % 4
                if route == 0:
                    r = c.get(f"{prefix}/orders/{ids[prefix]}")
                elif route == 1:
                    r = c.get(f"{prefix}/orders", params={"limit": 20})
                elif route == 2:
                    r = c.post(f"{prefix}/orders", json=ORDER)
                else:
                    r = post(c, prefix, str(uuid.uuid4()))
                statuses[prefix, r.status_code] += 1

    def run(seconds: float) -> None:
        stop.clear()
        threads = [threading.Thread(target=load, args=(i,)) for i in range(len(PREFIXES) * clients)]
        for t in threads:
            t.start()
        stop.wait(seconds)
        stop.set()
        for t in threads:
            t.join(60)

    run(1.5)  # warm-up: the pools grow to what this load needs
    before = sessions_opened(url)
    run(3)
    after = sessions_opened(url)
    assert after - before == 1, f"{after - before - 1} sessions opened under load; {statuses}"
    assert {s for _, s in statuses} <= {200, 201}, statuses


def worker_pids(stack: Stack) -> set[int]:
    pids = set()
    for program in (half.program for half in HALVES):
        master = stack.master_pid(program)
        pids |= {int(p) for p in Path(f"/proc/{master}/task/{master}/children").read_text().split()}
    return pids


def wait_ready(client: httpx.Client, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not all(client.get(f"{p}/ready").status_code == 200 for p in PREFIXES):
        assert time.monotonic() < deadline, "not ready again"
        time.sleep(0.2)


def test_a_stopped_database_is_503_and_the_pools_recover_by_themselves(db_stack: Stack):
    with db_stack.client() as client:
        wait_ready(client)
        assert all(client.get(f"{p}/db").status_code == 200 for p in PREFIXES)  # the pools hold connections
        workers = worker_pids(db_stack)
        db_stack.ctl("stop", "postgres")
        try:
            for prefix in PREFIXES:
                for path in ("/ready", "/db", f"/orders/{uuid.uuid4()}", "/orders"):
                    r = client.get(prefix + path)
                    assert r.status_code == 503, (prefix, path, r.text)
                    assert r.json()["error"]["code"] == "database_unavailable"
                    assert r.headers["retry-after"] == "1"
                created = post(client, prefix, str(uuid.uuid4()))
                assert created.status_code == 503 and created.json()["error"]["code"] == "database_unavailable"
                # Liveness and the workloads without a database are unaffected.
                assert client.get(f"{prefix}/health").status_code == 200
                assert client.get(f"{prefix}/io", params={"delay_ms": 1}).status_code == 200
                assert client.get(f"{prefix}/cpu", params={"work": 10}).status_code == 200
        finally:
            db_stack.ctl("start", "postgres")
        wait_ready(client)
        assert all(client.get(f"{p}/db").status_code == 200 for p in PREFIXES)
        assert worker_pids(db_stack) == workers  # no worker was restarted to get there


class OrderLoad:
    """Clients posting orders through each half, each with its own key, retrying a 503 with
    the same key (as the Retry-After says) until it gets its 201."""

    def __init__(self, base_url: str, clients: int) -> None:
        self.base_url, self.stop = base_url, threading.Event()
        self.created: dict[str, str] = {}  # key -> order_id answered 201
        self.answers: Counter[tuple[int, str]] = Counter()
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._run, args=(PREFIXES[i % len(PREFIXES)],)) for i in range(clients)]

    def _run(self, prefix: str) -> None:
        with httpx.Client(base_url=self.base_url, timeout=40) as client:
            while not self.stop.is_set():
                key = str(uuid.uuid4())
                for _ in range(200):  # bounded: 200 tries, 50 ms apart
                    r = post(client, prefix, key)
                    code = r.json().get("error", {}).get("code", "") if r.status_code != 201 else ""
                    with self.lock:
                        self.answers[r.status_code, code] += 1
                        if r.status_code == 201:
                            assert self.created.setdefault(key, r.json()["order_id"]) == r.json()["order_id"]
                    if r.status_code == 201:
                        break
                    time.sleep(0.05)

    def __enter__(self) -> OrderLoad:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(60)

    def wait_for(self, predicate, what: str, timeout_s: float = 60) -> None:
        """Poll ``predicate`` (called under the lock) while the load runs."""
        wait_until(predicate, lambda: f"{what} ({self.answers})", time.monotonic() + timeout_s, self.lock)


@pytest.mark.timeout(240)
@pytest.mark.repeated
@pytest.mark.parametrize("clients", [4, 24])
def test_a_killed_database_loses_no_created_order(db_stack: Stack, clients: int):
    """Under load, PostgreSQL is SIGKILLed twice and the supervisor restarts it (crash
    recovery replays the WAL). Every order answered 201 is in the database afterwards, none
    twice; every other answer was a 503 JSON (database_unavailable, or a full pool while it
    came back); no worker was restarted."""
    url = database_url(db_stack)
    with db_stack.client() as client:
        wait_ready(client)
        workers = worker_pids(db_stack)
        with OrderLoad(db_stack.base_url, clients) as load:
            for kill in range(2):
                created = len(load.created)
                load.wait_for(lambda n=created: len(load.created) >= n + 20, f"20 orders before kill {kill}")
                unavailable = load.answers[503, "database_unavailable"]
                os.kill(db_stack.master_pid("postgres"), signal.SIGKILL)
                # Each kill is seen by the load (a 503 database_unavailable), then recovered from.
                load.wait_for(lambda n=unavailable: load.answers[503, "database_unavailable"] > n, f"kill {kill} seen")
                wait_ready(client)
            created = len(load.created)
            load.wait_for(lambda: len(load.created) >= created + 20, "20 orders after the last kill")
        assert set(load.answers) <= {(201, ""), (503, "database_unavailable"), (503, "pool_exhausted")}, load.answers
        with psycopg.connect(url) as conn:
            rows = dict(
                conn.execute(
                    "SELECT idempotency_key, id::text FROM orders WHERE idempotency_key = ANY(%s)",
                    (list(load.created),),
                ).fetchall()
            )
            twice = conn.execute(
                "SELECT count(*) FROM orders WHERE idempotency_key = ANY(%s)"
                " GROUP BY idempotency_key HAVING count(*) > 1",
                (list(load.created),),
            ).fetchall()
        assert rows == load.created  # every 201 stored, with the id that was answered
        assert twice == []
        assert worker_pids(db_stack) == workers


def test_native_mode_uses_an_external_database_when_given_one(tmp_path: Path, database_url: str, nginx_bin: str):
    """TWINSTACK_DATABASE_URL set: no private cluster is made or started, the migrations run on
    that database, and the orders land there (here the tests' own server stands in for a
    managed PostgreSQL)."""
    with running_stack(tmp_path, TWINSTACK_DATABASE_URL=database_url) as own:
        (program,) = [line for line in own.ctl("status").splitlines() if line.startswith("postgres ")]
        assert "STOPPED" in program and "Not started" in program, program
        assert not (own.run_dir / "postgres.password").exists()  # no private cluster was made
        with own.client() as client:
            created = post(client, PREFIXES[0], str(uuid.uuid4()))
            assert created.status_code == 201, created.text
        with psycopg.connect(database_url) as conn:
            found = conn.execute("SELECT count(*) FROM orders WHERE id = %s", (created.json()["order_id"],)).fetchone()
        assert found == (1,)


def test_an_unreachable_external_database_stops_make_up_with_a_clear_message(tmp_path: Path, nginx_bin: str):
    from tests.integration.conftest import make_stack
    from tests.support import free_port

    url = f"postgresql://twinstack:s3cret-value@127.0.0.1:{free_port()}/twinstack"
    own = make_stack(tmp_path, TWINSTACK_DATABASE_URL=url, TWINSTACK_READY_TIMEOUT_S="2")
    try:
        result = own.native("up", check=False)
        assert result.returncode != 0
        assert "cannot connect to the external database at 127.0.0.1:" in result.stderr, result.stderr
        assert "s3cret-value" not in result.stdout + result.stderr  # never the password
        assert "Traceback" not in result.stderr
    finally:
        own.stop()


def test_a_failing_migration_stops_make_up_with_alembics_message_and_starts_no_pool(
    tmp_path: Path, postgres_url: str, nginx_bin: str
):
    """A database where the first migration cannot run (its table is already there, made by
    hand): `make up` stops with what Alembic and PostgreSQL said, and neither pool is started
    on a schema that is not the code's."""
    from tests.conftest import other_database
    from tests.integration.conftest import make_stack

    url = other_database(postgres_url, "broken")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE orders (id int)")
    own = make_stack(tmp_path, TWINSTACK_DATABASE_URL=url)
    try:
        result = own.native("up", check=False)
        assert result.returncode != 0
        said = result.stdout + result.stderr
        assert 'relation "orders" already exists' in said and "alembic" in said.lower(), said[-3000:]
        status = own.ctl("status")
        for program in (half.program for half in HALVES):
            assert not re.search(rf"^{program}\s+RUNNING", status, re.M), status
    finally:
        own.stop()


POOL_SIZE = f"TWINSTACK_{HALVES[0].prefix.upper()}_DB_POOL_SIZE"


@pytest.mark.parametrize(
    ("pool_size", "said"),
    # Over the budget of a server that allows 20 connections with any worker count; over the
    # setting's own bound. On the first half this project has.
    [("25", "does not fit"), ("1000", f"{POOL_SIZE}=1000")],
)
def test_native_make_up_over_the_connection_budget_refuses_before_starting_anything(
    tmp_path: Path, nginx_bin: str, pool_size: str, said: str
):
    """Pools that would open more connections than PostgreSQL allows: refused with the sum,
    before supervisord, PostgreSQL or any pool is started; a size no pool may have, refused
    with the variable's name."""
    from tests.integration.conftest import make_stack

    own = make_stack(tmp_path, **{POOL_SIZE: pool_size}, TWINSTACK_DB_MAX_CONNECTIONS="20")
    try:
        result = own.native("up", check=False)
        assert result.returncode != 0
        assert said in result.stdout + result.stderr, result.stdout + result.stderr
        assert "Traceback" not in result.stderr
        assert not (own.run_dir / "supervisord.pid").exists()  # nothing was started
    finally:
        own.stop()
