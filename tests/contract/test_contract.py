"""One contract, two implementations: the same request to both services, the same answer.

Each case runs against the FastAPI app (Starlette's TestClient) and the Flask app (Flask's
test client), both built by their factories and calling the same live downstream, both reached
from 127.0.0.1, a trusted peer (as nginx is). Both answers must agree on:

- the status;
- the headers a client acts on: Content-Type, X-Request-ID (the one sent, echoed), Allow (on
  a 405: present, the same set of methods; absent otherwise), Location (the same, or absent on
  both), Server-Timing (present on both);
- the JSON body, which must also be exactly the response model the contract names for it.

Values that legitimately differ (worker ids, timings, generated ids, the framework's name) are
masked by their path in that model, and only there (VOLATILE): a field added later is compared
until someone decides it may differ.
"""

from __future__ import annotations

import io
import json
import logging
import re
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from fastapi.testclient import TestClient

from fastapi_service.main import create_app as create_fastapi
from fastapi_service.settings import Settings as FastAPISettings
from flask_service.main import create_app as create_flask
from flask_service.main import shutdown as shutdown_flask
from flask_service.settings import Settings as FlaskSettings
from tests.contract.parity import ANY, SIDES, VOLATILE, Answer, masked, model_for, parse
from tests.support import free_port
from twinstack_contract.limits import MAX_BODY_BYTES
from twinstack_contract.models import ErrorBody, Job
from twinstack_runtime.logs import ACCESS_FIELDS

ORDER = {"sku": "TS-1001", "quantity": 2, "unit_price_cents": 1999, "customer_email": "ada@example.com"}
# Every field at the widest the contract allows: 32-character sku, 254-character address.
WIDEST = {
    "sku": "A" * 32,
    "quantity": 1000,
    "unit_price_cents": 10_000_000,
    "customer_email": "a" * 242 + "@example.com",
}
# Well-formed, so a trusted peer's id is kept and echoed (twinstack_runtime.proxy.request_id).
REQUEST_ID = "contract-0001-abcd"


UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def same_up_to_ids(value: str | None) -> str | None:
    return UUID_RE.sub("<id>", value) if value is not None else None


def allowed(answer: Answer) -> set[str]:
    return {method.strip() for method in answer.headers["allow"].split(",") if method.strip()}


def assert_same_headers(a: Answer, b: Answer, request_id: str | None = REQUEST_ID) -> None:
    for side, answer in zip(SIDES, (a, b), strict=True):
        if request_id is not None:
            assert answer.headers.get("x-request-id") == request_id, (side, answer.headers)
        assert "server-timing" in answer.headers, (side, answer.headers)
    assert a.headers.get("content-type") == b.headers.get("content-type")
    # The same Location, up to the id each service's new order got.
    assert same_up_to_ids(a.headers.get("location")) == same_up_to_ids(b.headers.get("location"))
    assert a.headers.get("retry-after") == b.headers.get("retry-after")
    if a.status == 405:
        assert allowed(a) and allowed(a) == allowed(b), (a.headers, b.headers)
    else:
        assert "allow" not in a.headers and "allow" not in b.headers, (a.headers, b.headers)


Call = Callable[..., Answer]


@contextmanager
def pair(settings_kwargs: dict) -> Iterator[dict[str, Call]]:
    """Both apps, each behind a client that reaches it from 127.0.0.1 (a trusted proxy)."""
    fastapi_app = create_fastapi(FastAPISettings(**settings_kwargs))
    flask_app = create_flask(FlaskSettings(**settings_kwargs), {"TESTING": True})
    flask_client = flask_app.test_client()
    flask_client.environ_base["REMOTE_ADDR"] = "127.0.0.1"
    try:
        # follow_redirects off: a redirect is an answer to compare (Location), not followed.
        with TestClient(fastapi_app, client=("127.0.0.1", 40000), follow_redirects=False) as fastapi_client:

            def via_fastapi(method: str, path: str, body: Any = None, headers: dict | None = None) -> Answer:
                r = fastapi_client.request(method, path, content=body, headers=headers)
                answer = Answer(r.status_code, {k.lower(): v for k, v in r.headers.items()}, None)
                answer.body = parse(r.content, answer.media_type)
                return answer

            def via_flask(
                method: str, path: str, body: Any = None, headers: dict | None = None, **environ: Any
            ) -> Answer:
                r = flask_client.open(path, method=method, data=body, headers=headers, environ_overrides=environ)
                answer = Answer(r.status_code, {k.lower(): v for k, v in r.headers.items()}, None)
                answer.body = parse(r.get_data(), answer.media_type)
                r.close()  # as the WSGI server does: runs call_on_close (a job is queued then)
                return answer

            yield {"fastapi": via_fastapi, "flask": via_flask}
    finally:
        shutdown_flask(flask_app)


@pytest.fixture
def both(settings_kwargs: dict) -> Iterator[dict[str, Call]]:
    with pair(settings_kwargs) as calls:
        yield calls


@pytest.fixture
def both_downstream_down(settings_kwargs: dict) -> Iterator[dict[str, Call]]:
    """Both apps with a downstream that refuses connections (a port nothing listens on)."""
    with pair({**settings_kwargs, "downstream_url": f"http://127.0.0.1:{free_port()}"}) as calls:
        yield calls


def padded(document: dict, size: int) -> bytes:
    """``document`` as JSON of exactly ``size`` bytes (white space before the closing brace)."""
    raw = json.dumps(document).encode()
    return raw[:-1] + b" " * (size - len(raw)) + b"}"


JSON = {"Content-Type": "application/json"}
CASES = [
    # (id, method, path, body, headers, expected status)
    ("health", "GET", "/health", None, {}, 200),
    ("ready", "GET", "/ready", None, {}, 200),
    ("io", "GET", "/io?delay_ms=5", None, {}, 200),
    ("io-default", "GET", "/io", None, {}, 200),
    ("io-negative", "GET", "/io?delay_ms=-1", None, {}, 422),
    ("io-too-long", "GET", "/io?delay_ms=30001", None, {}, 422),
    ("io-not-a-number", "GET", "/io?delay_ms=abc", None, {}, 422),
    ("io-float", "GET", "/io?delay_ms=1.5", None, {}, 422),
    ("io-huge", "GET", "/io?delay_ms=" + "9" * 40, None, {}, 422),
    ("cpu", "GET", "/cpu?work=1000", None, {}, 200),
    ("cpu-zero", "GET", "/cpu?work=0", None, {}, 422),
    ("cpu-too-much", "GET", "/cpu?work=2000001", None, {}, 422),
    ("fanout", "GET", "/fanout?calls=3&delay_ms=5", None, {}, 200),
    ("fanout-too-many", "GET", "/fanout?calls=51", None, {}, 422),
    ("fanout-over-budget", "GET", "/fanout?calls=50&delay_ms=1000", None, {}, 422),
    ("stream", "GET", "/stream?chunks=3&interval_ms=1", None, {}, 200),
    ("stream-zero", "GET", "/stream?chunks=0", None, {}, 422),
    ("stream-over-budget", "GET", "/stream?chunks=100&interval_ms=5000", None, {}, 422),
    ("order", "POST", "/orders", json.dumps(ORDER).encode(), JSON, 201),
    # Strict, as the schema says: a string, a bool or a float is not an integer (no coercion).
    ("order-string-int", "POST", "/orders", json.dumps({**ORDER, "quantity": "3"}).encode(), JSON, 422),
    ("order-bool-int", "POST", "/orders", json.dumps({**ORDER, "quantity": True}).encode(), JSON, 422),
    ("order-fraction", "POST", "/orders", json.dumps({**ORDER, "quantity": 2.5}).encode(), JSON, 422),
    # ... but 2.0 is the integer 2 in JSON (and in JSON Schema): accepted, as the schema says.
    ("order-integral-float", "POST", "/orders", json.dumps({**ORDER, "quantity": 2.0}).encode(), JSON, 201),
    # The widest values the contract allows fit their columns: nothing reaches the database that
    # it would refuse (too long, out of range); one more is 422 from the model, before any SQL.
    ("order-at-column-limits", "POST", "/orders", json.dumps(WIDEST).encode(), JSON, 201),
    ("order-sku-too-long", "POST", "/orders", json.dumps({**WIDEST, "sku": "A" * 33}).encode(), JSON, 422),
    (
        "order-email-too-long",
        "POST",
        "/orders",
        json.dumps({**WIDEST, "customer_email": "a" * 243 + "@example.com"}).encode(),
        JSON,
        422,
    ),
    ("order-quantity-over", "POST", "/orders", json.dumps({**WIDEST, "quantity": 1001}).encode(), JSON, 422),
    ("order-price-over", "POST", "/orders", json.dumps({**WIDEST, "unit_price_cents": 10_000_001}).encode(), JSON, 422),
    ("order-price-int64", "POST", "/orders", json.dumps({**WIDEST, "unit_price_cents": 2**63}).encode(), JSON, 422),
    ("order-sql-text", "POST", "/orders", json.dumps({**ORDER, "sku": "A'; DROP TABLE orders;--"}).encode(), JSON, 422),
    (
        "order-idempotency-key",
        "POST",
        "/orders",
        json.dumps(ORDER).encode(),
        {**JSON, "Idempotency-Key": uuid.uuid4().hex},
        201,
    ),
    (
        "order-idempotency-key-widest",
        "POST",
        "/orders",
        json.dumps(ORDER).encode(),
        {**JSON, "Idempotency-Key": "k" * 255},
        201,
    ),
    (
        "order-idempotency-key-too-long",
        "POST",
        "/orders",
        json.dumps(ORDER).encode(),
        {**JSON, "Idempotency-Key": "k" * 256},
        422,
    ),
    (
        "order-idempotency-key-space",
        "POST",
        "/orders",
        json.dumps(ORDER).encode(),
        {**JSON, "Idempotency-Key": "a b"},
        422,
    ),
    (
        "order-idempotency-key-empty",
        "POST",
        "/orders",
        json.dumps(ORDER).encode(),
        {**JSON, "Idempotency-Key": ""},
        422,
    ),
    # A bad key and a bad body: one 422 listing both, the header's first (FastAPI's order).
    (
        "order-bad-key-and-body",
        "POST",
        "/orders",
        json.dumps({**ORDER, "quantity": 0}).encode(),
        {**JSON, "Idempotency-Key": "a b"},
        422,
    ),
    ("order-bad-key-empty-body", "POST", "/orders", b"", {**JSON, "Idempotency-Key": "k" * 256}, 422),
    # Before the key is looked at: the media type (415), then JSON itself (400).
    ("order-bad-key-not-json", "POST", "/orders", b'{"sku": ', {**JSON, "Idempotency-Key": "a b"}, 400),
    (
        "order-bad-key-text-plain",
        "POST",
        "/orders",
        b"{}",
        {"Content-Type": "text/plain", "Idempotency-Key": "a b"},
        415,
    ),
    ("order-unknown", "GET", f"/orders/{uuid.UUID(int=0)}", None, {}, 404),
    ("order-malformed-id", "GET", "/orders/not-a-uuid", None, {}, 422),
    ("order-id-injection", "GET", "/orders/1%27%20OR%20%271%27%3D%271", None, {}, 422),
    ("orders-page", "GET", "/orders?limit=3", None, {}, 200),
    ("orders-default-page", "GET", "/orders", None, {}, 200),
    ("orders-limit-zero", "GET", "/orders?limit=0", None, {}, 422),
    ("orders-limit-over", "GET", "/orders?limit=101", None, {}, 422),
    ("orders-after-malformed", "GET", "/orders?after=xyz", None, {}, 422),
    ("orders-after-unknown", "GET", f"/orders?after={uuid.UUID(int=1)}", None, {}, 404),
    ("db", "GET", "/db?delay_ms=1", None, {}, 200),
    ("db-default", "GET", "/db", None, {}, 200),
    ("db-negative", "GET", "/db?delay_ms=-1", None, {}, 422),
    ("db-too-long", "GET", "/db?delay_ms=30001", None, {}, 422),
    ("job-bool-int", "POST", "/jobs", b'{"delay_ms": true}', JSON, 422),
    ("order-missing", "POST", "/orders", b'{"sku": "TS-1"}', JSON, 422),
    ("order-bad-values", "POST", "/orders", json.dumps({**ORDER, "sku": "bad sku", "quantity": 0}).encode(), JSON, 422),
    ("order-extra-field", "POST", "/orders", json.dumps({**ORDER, "admin": True}).encode(), JSON, 422),
    ("order-empty-body", "POST", "/orders", b"", JSON, 422),
    ("order-null", "POST", "/orders", b"null", JSON, 422),
    ("order-deep-nesting", "POST", "/orders", b"[" * 10_000 + b"]" * 10_000, JSON, 400),
    ("order-array", "POST", "/orders", b"[1, 2]", JSON, 422),
    ("order-malformed", "POST", "/orders", b'{"sku": ', JSON, 400),
    ("order-invalid-utf8", "POST", "/orders", b'{"sku": "\xff\xfe"}', JSON, 400),
    ("order-text-plain", "POST", "/orders", json.dumps(ORDER).encode(), {"Content-Type": "text/plain"}, 415),
    ("order-no-content-type", "POST", "/orders", json.dumps(ORDER).encode(), {}, 415),
    ("order-form", "POST", "/orders", b"sku=TS-1", {"Content-Type": "application/x-www-form-urlencoded"}, 415),
    # The body limit, at the byte: 64 KiB is accepted, one byte more is 413 JSON on both.
    ("order-at-body-limit", "POST", "/orders", padded(ORDER, MAX_BODY_BYTES), JSON, 201),
    ("order-over-body-limit", "POST", "/orders", padded(ORDER, MAX_BODY_BYTES + 1), JSON, 413),
    ("job-over-body-limit", "POST", "/jobs", padded({"delay_ms": 1}, 1024 * 1024), JSON, 413),
    ("job", "POST", "/jobs", b'{"delay_ms": 1}', JSON, 202),
    ("job-invalid", "POST", "/jobs", b'{"delay_ms": -5}', JSON, 422),
    ("job-unknown", "GET", "/jobs/" + "0" * 32, None, {}, 404),
    ("job-bad-id", "GET", "/jobs/..%2F..%2Fetc%2Fpasswd", None, {}, 404),
    ("inspect", "GET", "/inspect", None, {}, 200),
    ("unknown-path", "GET", "/no/such/path", None, {}, 404),
    # No redirect to the slash-less path on one side and a 404 on the other.
    ("trailing-slash", "GET", "/health/", None, {}, 404),
    ("jobs-trailing-slash", "GET", "/jobs/", None, {}, 404),
    # Methods: HEAD wherever GET (RFC 9110 9.3.2); any other method a 405 that says, in Allow,
    # the same methods on both sides. OPTIONS (CORS preflight) is nginx's to answer.
    ("head", "HEAD", "/health", None, {}, 200),
    ("head-on-post-route", "HEAD", "/jobs", None, {}, 405),
    ("wrong-method", "DELETE", "/health", None, {}, 405),
    ("post-on-get-route", "POST", "/health", b"{}", JSON, 405),
    ("get-on-post-route", "GET", "/jobs", None, {}, 405),
    ("delete-on-orders", "DELETE", "/orders", None, {}, 405),
    ("options", "OPTIONS", "/health", None, {}, 405),
]


@pytest.mark.parametrize(
    ("method", "path", "body", "headers", "status"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_same_request_same_answer(both: dict, method: str, path: str, body: bytes | None, headers: dict, status: int):
    headers = {**headers, "X-Request-ID": REQUEST_ID}
    async_answer = both["fastapi"](method, path, body, headers)
    sync_answer = both["flask"](method, path, body, headers)
    assert async_answer.status == status, async_answer.body
    assert sync_answer.status == status, sync_answer.body
    assert_same_headers(async_answer, sync_answer)
    if method == "HEAD":  # the headers a GET would have, no body
        assert async_answer.body is None and sync_answer.body is None
        return
    model = model_for(path, status, method)
    assert masked(async_answer.body, model, "fastapi") == masked(sync_answer.body, model, "flask")
    if status >= 400:
        error = async_answer.body["error"]
        assert (error["status"], error["request_id"]) == (status, REQUEST_ID)
        assert async_answer.media_type == "application/json"


def test_a_chunked_body_over_the_limit_is_413_on_both(both: dict):
    """No Content-Length to refuse up front: the limit holds while the body is read, as
    gunicorn hands Flask a chunked body (wsgi.input_terminated) and uvicorn hands FastAPI one.
    The order comes first and white space after it, so a body cut at the limit would still
    parse: only a refusal of the whole body answers 413."""
    body = json.dumps(ORDER).encode().ljust(MAX_BODY_BYTES + 1)
    headers = {**JSON, "X-Request-ID": REQUEST_ID}
    a = both["fastapi"]("POST", "/orders", (body[i : i + 4096] for i in range(0, len(body), 4096)), headers)
    b = both["flask"](
        "POST",
        "/orders",
        None,
        {**headers, "Transfer-Encoding": "chunked"},
        **{"wsgi.input": io.BytesIO(body), "wsgi.input_terminated": True},
    )
    assert (a.status, b.status) == (413, 413), (a.body, b.body)
    assert_same_headers(a, b)
    assert masked(a.body, ErrorBody, "fastapi") == masked(b.body, ErrorBody, "flask")
    assert a.body["error"]["code"] == "payload_too_large"


@pytest.mark.parametrize(
    ("path", "status"),
    [("/ready", 503), ("/health", 200)],  # liveness never touches the downstream
)
def test_downstream_down_same_answer(both_downstream_down: dict, path: str, status: int):
    headers = {"X-Request-ID": REQUEST_ID}
    a = both_downstream_down["fastapi"]("GET", path, None, headers)
    b = both_downstream_down["flask"]("GET", path, None, headers)
    assert (a.status, b.status) == (status, status), (a.body, b.body)
    assert_same_headers(a, b)
    model = model_for(path, status)
    assert masked(a.body, model, "fastapi") == masked(b.body, model, "flask")
    if status == 503:
        assert a.body["error"]["code"] == "not_ready"
        assert a.body["error"]["message"].startswith("Downstream unreachable")


def test_a_job_reads_back_the_same_on_both(both: dict):
    """POST a job to each service, then read it back there: the same shape, and it finishes."""
    headers = {**JSON, "X-Request-ID": REQUEST_ID}
    ids = {}
    for side in SIDES:
        created = both[side]("POST", "/jobs", b'{"delay_ms": 1, "work": 100}', headers)
        assert created.status == 202, created.body
        ids[side] = created.body["job_id"]
    volatile = {**VOLATILE[Job], ("started_at",): ANY, ("finished_at",): ANY}
    deadline = time.monotonic() + 10
    while True:
        answers = {side: both[side]("GET", f"/jobs/{ids[side]}", None, {"X-Request-ID": REQUEST_ID}) for side in SIDES}
        if all(a.body.get("status") == "done" for a in answers.values()) or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    a, b = answers["fastapi"], answers["flask"]
    assert (a.status, b.status) == (200, 200), (a.body, b.body)
    assert_same_headers(a, b)
    assert a.body["job_id"] == ids["fastapi"] and b.body["job_id"] == ids["flask"]
    assert masked(a.body, Job, "fastapi", volatile) == masked(b.body, Job, "flask", volatile)
    assert a.body["status"] == "done", a.body
    assert a.body["started_at"] <= a.body["finished_at"] and b.body["started_at"] <= b.body["finished_at"]


def test_a_malformed_request_id_is_replaced_on_both(both: dict):
    """Not echoed: each service mints its own, and its error names that one."""
    a = both["fastapi"]("GET", "/no/such/path", None, {"X-Request-ID": "bad id!"})
    b = both["flask"]("GET", "/no/such/path", None, {"X-Request-ID": "bad id!"})
    assert_same_headers(a, b, request_id=None)
    for answer in (a, b):
        minted = answer.headers["x-request-id"]
        assert minted != "bad id!" and answer.body["error"]["request_id"] == minted
    volatile = {("error", "request_id"): ANY}
    assert masked(a.body, ErrorBody, "fastapi", volatile) == masked(b.body, ErrorBody, "flask", volatile)


def test_cpu_work_is_the_same_work(both: dict):
    """Not just the same shape: both run the identical computation."""
    a = both["fastapi"]("GET", "/cpu?work=5000")
    b = both["flask"]("GET", "/cpu?work=5000")
    assert a.body["digest"] == b.body["digest"]


def test_fanout_modes_differ_as_designed(both: dict):
    assert both["fastapi"]("GET", "/fanout?calls=2&delay_ms=1").body["mode"] == "concurrent"
    assert both["flask"]("GET", "/fanout?calls=2&delay_ms=1").body["mode"] == "sequential"


def test_both_services_implement_every_contract_path():
    """The paths in the published OpenAPI schema are exactly Flask's."""
    schema = create_fastapi(FastAPISettings()).openapi()
    contract = {
        (method.upper(), re.sub(r"\{(\w+)\}", r"<\1>", path))  # Flask spells {id} <id>
        for path, operations in schema["paths"].items()
        for method in operations
    }
    assert ("POST", "/orders") in contract
    flask_app = create_flask(FlaskSettings())
    shutdown_flask(flask_app)
    flask_routes = {
        (method, rule.rule)
        for rule in flask_app.url_map.iter_rules()
        if rule.endpoint not in ("static", "metrics.metrics")  # operations, not the contract
        for method in rule.methods - {"HEAD", "OPTIONS"}
    }
    assert contract == flask_routes


# --- the instrumentation switches (TWINSTACK_ACCESS_LOG, TWINSTACK_METRICS, TWINSTACK_REQUEST_ID)
def requests_counted(call: Call) -> float:
    lines = call("GET", "/metrics").body.splitlines()
    return sum(float(line.rsplit(" ", 1)[1]) for line in lines if line.startswith("twinstack_requests_total{"))


@pytest.mark.parametrize("switch", ["access_log", "metrics", "request_id"])
def test_each_instrumentation_switch_turns_off_only_its_piece_on_both(settings_kwargs: dict, caplog, switch: str):
    """The lab turns each piece off in turn to measure what it costs: off, it is gone on both
    services alike, and the answers and the other pieces stay as they were."""
    with pair({**settings_kwargs, switch: False}) as calls, caplog.at_level(logging.INFO, "twinstack.access"):
        for side, call in calls.items():
            caplog.clear()
            health = call("GET", "/health", headers={"X-Request-ID": REQUEST_ID})
            missing = call("GET", "/no/such/path", headers={"X-Request-ID": REQUEST_ID})
            assert health.status == 200 and missing.status == 404, side
            assert "server-timing" in health.headers, side
            lines = [r for r in caplog.records if r.name == "twinstack.access"]
            assert len(lines) == (0 if switch == "access_log" else 2), side
            if switch == "request_id":
                assert "x-request-id" not in health.headers, side
                assert missing.body["error"]["request_id"] is None, side
                assert all(r.__dict__[ACCESS_FIELDS]["request_id"] == "" for r in lines), side
            else:
                assert health.headers["x-request-id"] == REQUEST_ID, side
                assert missing.body["error"]["request_id"] == REQUEST_ID, side
            counted = requests_counted(call)
            assert counted == (0 if switch == "metrics" else 2), (side, counted)
