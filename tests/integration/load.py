"""A steady load through nginx on each pool the project has, each request with an id of its own, and what
nginx's logs say happened to each: answered, lost, resent."""

from __future__ import annotations

import re
import ssl
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from tests.integration import logs
from tests.support import PREFIXES, wait_until


def new_request_id() -> str:
    return f"steady-{uuid.uuid4().hex}"


class _Lost(Exception):
    """A GET that got no response: its id and the transport error."""

    def __init__(self, request_id: str, error: httpx.TransportError) -> None:
        super().__init__(request_id, error)
        self.request_id, self.error = request_id, error


class SteadyLoad:
    """Threads sending GETs (``path``) to both pools until stopped (at most ``max_s`` seconds).
    A request lost as a transport error (reset, timeout) is counted as a failure, by its
    exception's name, and the thread carries on."""

    def __init__(
        self,
        base_url: str,
        per_pool: int = 6,
        max_s: float = 30,
        sync_clients: int | None = None,
        verify: ssl.SSLContext | bool = True,
        path: str = "/io?delay_ms=30",
    ) -> None:
        self.base_url, self.deadline, self.verify, self.path = base_url, time.monotonic() + max_s, verify, path
        self.done = threading.Event()
        self.statuses: Counter[tuple[str, int | str]] = Counter()
        # Each GET carries an id of its own (X-Request-ID, which nginx logs): the ids of the
        # requests answered, of those lost as transport errors, and of first attempts resent.
        self.answered: dict[str, list[str]] = {p: [] for p in PREFIXES}
        self.lost: list[str] = []
        self.resent: list[str] = []
        self.served_by: dict[str, set[str]] = {p: set() for p in PREFIXES}
        self.lock = threading.Lock()
        clients = {"/async": per_pool, "/sync": per_pool if sync_clients is None else sync_clients}
        self.threads = [threading.Thread(target=self._run, args=(p,)) for p in PREFIXES for _ in range(clients[p])]

    def _run(self, prefix: str) -> None:
        with httpx.Client(base_url=self.base_url, timeout=30, verify=self.verify) as client:
            while not self.done.is_set() and time.monotonic() < self.deadline:
                try:
                    r = self._get(client, prefix)
                except _Lost as lost:
                    with self.lock:
                        self.statuses[(prefix, type(lost.error).__name__)] += 1
                        self.lost.append(lost.request_id)
                    continue
                with self.lock:
                    self.statuses[(prefix, r.status_code)] += 1
                    self.answered[prefix].append(r.request.headers["x-request-id"])
                    if r.status_code == 200:
                        self.served_by[prefix].add(r.json()["served_by"])

    def _get(self, client: httpx.Client, prefix: str) -> httpx.Response:
        """One GET, sent again once if the kept-alive connection closed before any byte of a
        response: HTTP/1.1's keep-alive race, which clients answer by resending an idempotent
        request (RFC 9112, 9.3.1), as browsers do. It is only that race if nginx never read the
        request (a reloading nginx closes idle connections); ``resends_nginx_read`` checks it
        against nginx's log. A response that had begun is never resent."""
        first = new_request_id()
        try:
            return client.get(prefix + self.path, headers={"X-Request-ID": first})
        except (httpx.ReadError, httpx.RemoteProtocolError) as exc:
            if isinstance(exc, httpx.RemoteProtocolError) and "without sending a response" not in str(exc):
                raise _Lost(first, exc) from exc
            with self.lock:
                self.resent.append(first)
        except httpx.TransportError as exc:
            raise _Lost(first, exc) from exc
        second = new_request_id()
        try:
            return client.get(prefix + self.path, headers={"X-Request-ID": second})
        except httpx.TransportError as exc:
            raise _Lost(second, exc) from exc

    def logged(self, log_dir: Path) -> dict[str, dict]:
        """nginx's access log lines, by request id, once every answered request is in it
        (nginx writes the log in blocks): then an id missing from it is one nginx never read."""
        answered = [rid for ids in self.answered.values() for rid in ids]
        found = logs.by_request_id(log_dir, "nginx", answered, timeout_s=30)
        assert len(found) == len(answered), f"{len(answered) - len(found)} answered requests not in nginx's log"
        return {r["request_id"]: r for r in logs.records(log_dir, "nginx") if "request_id" in r}

    def resends_nginx_read(self, log_dir: Path) -> list[str]:
        """First attempts that were resent although nginx had read them: a request dropped
        after nginx read it, which the resend would otherwise hide."""
        logged = self.logged(log_dir)
        return [rid for rid in self.resent if rid in logged]

    def lost_unexplained(self, log_dir: Path) -> list[str]:
        """Lost GETs not explained by the one window no proxy closes: a pool worker that died
        between a response's headers and its body. nginx logged such a request (status 200,
        headers passed on) and, on the same client connection, "upstream prematurely closed
        connection while reading upstream" (the body phase) in its error log."""
        logged, cut = self.logged(log_dir), cut_connections(log_dir)
        lost = self.lost + [rid for rid in self.resent if rid in logged]
        return [rid for rid in lost if rid not in logged or logged[rid]["connection"] not in cut]

    def retried(self, log_dir: Path, prefix: str) -> int:
        """This load's GETs to ``prefix`` that nginx answered 200 after a second upstream
        attempt: requests a dead worker had in flight, or a kept-alive connection to it carried."""
        logged = self.logged(log_dir)
        return sum(logged[rid]["status"] == 200 and more_than_one_attempt(logged[rid]) for rid in self.answered[prefix])

    def __enter__(self) -> SteadyLoad:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.done.set()
        for t in self.threads:
            t.join()

    def wait_for(self, predicate, what: str) -> None:
        """Poll ``predicate`` (called under the lock) while the load runs; fail at its deadline."""
        wait_until(predicate, lambda: f"{what} ({self.statuses})", self.deadline, self.lock)

    def failures(self) -> dict:
        return {k: v for k, v in self.statuses.items() if k[1] != 200}

    def ok(self, prefix: str) -> int:
        return self.statuses[(prefix, 200)]


def more_than_one_attempt(line: dict) -> bool:
    """nginx's log line shows more than one upstream attempt: ", " between the tries of one
    location, " : " before the retry location's (nginx/snippets/retry.conf)."""
    return ", " in line["upstream_addr"] or " : " in line["upstream_addr"]


CUT_AFTER_HEADERS = re.compile(r" \*(\d+) upstream prematurely closed connection while reading upstream,")


def cut_connections(log_dir: Path) -> set[int]:
    """The client connections (their numbers, "*N") on which nginx logged an upstream that
    closed after the response's headers, while it read the body."""
    errors = "".join(logs.read(p) for p in logs.files(log_dir, "nginx-error") if p.exists())
    return {int(n) for n in CUT_AFTER_HEADERS.findall(errors)}


# The serving models' burst (tests/integration/*_half/test_serving_models_*.py): 50 concurrent
# waits of 200 ms each. The event loop holds all 50 at once; a sync worker holds one.
N, DELAY_S = 50, 0.2


def burst(stack, path: str, n: int = N, delay_s: float = DELAY_S) -> tuple[int, list[dict]]:
    """``n`` concurrent waits; returns how many the app served at once (its own access log:
    each line's end time and duration, so no client-side clock or scheduling is measured)."""
    limits = httpx.Limits(max_connections=n, max_keepalive_connections=n)
    ids = [f"burst-{uuid.uuid4().hex}" for _ in range(n)]
    with httpx.Client(base_url=stack.base_url, timeout=60, limits=limits) as client:
        client.get(path.split("/io")[0] + "/health")  # warm up
        with ThreadPoolExecutor(n) as pool:
            responses = list(
                pool.map(
                    lambda rid: client.get(f"{path}?delay_ms={int(delay_s * 1000)}", headers={"X-Request-ID": rid}), ids
                )
            )
    assert [r.status_code for r in responses] == [200] * n
    service = "fastapi" if path.startswith("/async") else "flask"
    deadline = time.monotonic() + 10
    while len(served := logs.by_request_id(stack.log_dir, service, ids)) < n:
        assert time.monotonic() < deadline, f"{len(served)} of {n} access lines"
        time.sleep(0.1)
    return logs.max_overlap(map(logs.served_interval, served.values())), [r.json() for r in responses]
