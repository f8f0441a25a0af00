"""One contract, two implementations: the same request to both services, the same answer.

Each case runs against the FastAPI app (Starlette's TestClient) and the Flask app (Flask's
test client), both built by their factories and calling the same live downstream. Values that
legitimately differ (worker ids, timings, generated ids) are masked; everything else, status,
media type and the JSON body, valid or invalid, must be equal.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient

from fastapi_service.main import create_app as create_fastapi
from fastapi_service.settings import Settings as FastAPISettings
from flask_service.main import create_app as create_flask
from flask_service.main import shutdown as shutdown_flask
from flask_service.settings import Settings as FlaskSettings

VOLATILE = {
    "served_by", "request_id", "waited_ms", "elapsed_ms", "cpu_ms", "order_id", "job_id",
    "accepted_at", "started_at", "finished_at", "framework", "url", "path", "prefix", "host",
    "mode", "service",
}  # fmt: skip

ORDER = {"sku": "TS-1001", "quantity": 2, "unit_price_cents": 1999, "customer_email": "ada@example.com"}


@dataclass
class Answer:
    status: int
    media_type: str
    body: Any


def mask(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: ("<masked>" if k in VOLATILE else mask(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [mask(v) for v in value]
    return value


def parse(raw: bytes, media_type: str) -> Any:
    if media_type == "application/x-ndjson":
        return [json.loads(line) for line in raw.splitlines()]
    return json.loads(raw) if raw else None


@pytest.fixture
def both(settings_kwargs: dict) -> Iterator[dict]:
    fastapi_app = create_fastapi(FastAPISettings(**settings_kwargs))
    flask_app = create_flask(FlaskSettings(**settings_kwargs), {"TESTING": True})
    flask_client = flask_app.test_client()
    flask_client.environ_base["REMOTE_ADDR"] = "127.0.0.1"
    with TestClient(fastapi_app, client=("127.0.0.1", 40000)) as fastapi_client:

        def via_fastapi(method: str, path: str, body: bytes | None, headers: dict) -> Answer:
            r = fastapi_client.request(method, path, content=body, headers=headers)
            media = r.headers.get("content-type", "").split(";")[0]
            return Answer(r.status_code, media, parse(r.content, media))

        def via_flask(method: str, path: str, body: bytes | None, headers: dict) -> Answer:
            r = flask_client.open(path, method=method, data=body, headers=headers)
            media = r.headers.get("content-type", "").split(";")[0]
            return Answer(r.status_code, media, parse(r.get_data(), media))

        yield {"fastapi": via_fastapi, "flask": via_flask}
    shutdown_flask(flask_app)


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
    ("job", "POST", "/jobs", b'{"delay_ms": 1}', JSON, 202),
    ("job-invalid", "POST", "/jobs", b'{"delay_ms": -5}', JSON, 422),
    ("job-unknown", "GET", "/jobs/" + "0" * 32, None, {}, 404),
    ("job-bad-id", "GET", "/jobs/..%2F..%2Fetc%2Fpasswd", None, {}, 404),
    ("inspect", "GET", "/inspect", None, {}, 200),
    ("unknown-path", "GET", "/no/such/path", None, {}, 404),
    ("wrong-method", "DELETE", "/health", None, {}, 405),
]


@pytest.mark.parametrize(
    ("method", "path", "body", "headers", "status"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_same_request_same_answer(both: dict, method: str, path: str, body: bytes | None, headers: dict, status: int):
    async_answer = both["fastapi"](method, path, body, headers)
    sync_answer = both["flask"](method, path, body, headers)
    assert async_answer.status == status, async_answer.body
    assert sync_answer.status == status, sync_answer.body
    assert async_answer.media_type == sync_answer.media_type
    assert mask(async_answer.body) == mask(sync_answer.body)
    if status >= 400:
        error = async_answer.body["error"]
        assert error["status"] == status
        assert set(error) == {"status", "code", "message", "details", "request_id"}


def test_cpu_work_is_the_same_work(both: dict):
    """Not just the same shape: both run the identical computation."""
    a = both["fastapi"]("GET", "/cpu?work=5000", None, {})
    b = both["flask"]("GET", "/cpu?work=5000", None, {})
    assert a.body["digest"] == b.body["digest"]


def test_fanout_modes_differ_as_designed(both: dict):
    assert both["fastapi"]("GET", "/fanout?calls=2&delay_ms=1", None, {}).body["mode"] == "concurrent"
    assert both["flask"]("GET", "/fanout?calls=2&delay_ms=1", None, {}).body["mode"] == "sequential"


def test_both_services_implement_every_contract_path():
    """The paths in the published OpenAPI schema (minus the ASGI-only lab) are exactly Flask's."""
    schema = create_fastapi(FastAPISettings()).openapi()
    contract = {
        (method.upper(), path.replace("{job_id}", "<job_id>"))
        for path, operations in schema["paths"].items()
        if not path.startswith("/lab/")
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
