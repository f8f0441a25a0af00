"""Property-based fuzzing (schemathesis + Hypothesis) of the published OpenAPI schema against
*both* services through nginx, with every check schemathesis has: /async/openapi.json is the
contract of /sync too, so each generated request, valid or not, runs against both prefixes and
each answer must conform: no 5xx, a declared status, media type, headers and body, invalid
data refused, valid data accepted, a 405 that says what is allowed, within a time limit, and
every error in the one JSON shape.

Bounded: a fixed number of examples per operation, and the parameters that buy time (a wait,
hashing) are capped to small valid values, so /io, /fanout, /stream, /cpu and /jobs are fuzzed
like the rest instead of being left out. Each place a check is narrowed says why, there.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import CHECKS, load_all_checks, max_response_time, not_a_server_error
from schemathesis.specs.openapi.checks import (
    negative_data_rejection,
    positive_data_acceptance,
    unsupported_method,
)

from fastapi_service.main import create_app
from fastapi_service.settings import Settings
from tests.contract import parity
from tests.integration.conftest import Stack, running_stack
from twinstack_contract.models import MAX_CHUNKS, MAX_FANOUT_CALLS, MAX_REQUEST_MS, ErrorBody, Inspection, OrderPage

pytestmark = pytest.mark.integration

PREFIXES = ("/async", "/sync")
# The deployment's schema (lab routes off, as deployed): test_the_fuzzed_schema_is_the_published_one
# checks that /async/openapi.json serves exactly this.
SPEC = create_app(Settings()).openapi()
schema = schemathesis.openapi.from_dict(SPEC)
# Every capped request answers well within this (the slowest, /stream's 100 lines at the cap,
# in about a quarter of a second); setting it also turns max_response_time on.
schema.config.checks.update(max_response_time=5.0)

# The methods nginx lets through to the pools (snippets/routes.conf); it answers any other
# method itself: 501 JSON, or for TRACE nginx core's 405 JSON (with Allow).
PASSED_BY_NGINX = {"GET", "HEAD", "POST", "OPTIONS"}
REFUSED_BY_NGINX = {501: "not_implemented", 405: "method_not_allowed"}
ERROR_KEYS = {"status", "code", "message", "details", "request_id"}

# Parameters that buy time, and the largest value the fuzz sends. A generated value above the
# cap but within the schema's maximum (valid) is lowered to the cap, a left-out one is sent at
# the cap, and a value outside the schema is sent as generated: no request changes from valid
# to invalid or back.
COSTLY = {
    ("/io", "delay_ms"): 5,
    ("/db", "delay_ms"): 5,
    ("/fanout", "delay_ms"): 2,  # x 50 calls, one after another in Flask
    ("/stream", "interval_ms"): 2,  # x 100 lines
    ("/cpu", "work"): 20_000,  # SHA-256 rounds: about 20 ms
    # Jobs run after the 202 on two threads per worker; long ones would fill the queue (503).
    ("/jobs", "delay_ms"): 5,
    ("/jobs", "work"): 20_000,
}
# /fanout and /stream also refuse (422) calls x delay_ms or chunks x interval_ms above 30 s, a
# bound their schema can only describe: it types each parameter on its own, so schemathesis
# generates e.g. calls=37&delay_ms=3000 as valid. positive_data_acceptance stays on for both
# because the caps keep every generated product within the bound, asserted here.
assert MAX_FANOUT_CALLS * COSTLY["/fanout", "delay_ms"] <= MAX_REQUEST_MS
assert MAX_CHUNKS * COSTLY["/stream", "interval_ms"] <= MAX_REQUEST_MS


def schema_maximum(path: str, method: str, name: str) -> int:
    operation = SPEC["paths"][path][method.lower()]
    for parameter in operation.get("parameters", []):
        if parameter["name"] == name:
            return parameter["schema"]["maximum"]
    ref = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    return SPEC["components"]["schemas"][ref.rsplit("/", 1)[1]]["properties"][name]["maximum"]


def capped(path: str, method: str, name: str, value: Any) -> Any:
    cap = COSTLY.get((path, name))
    if cap is None or isinstance(value, bool):
        return value
    maximum = schema_maximum(path, method, name)
    if isinstance(value, int | float) and cap < value <= maximum and float(value).is_integer():
        return type(value)(cap)  # 4497.0 stays a float: the body is sent as generated but smaller
    if isinstance(value, str) and re.fullmatch(r"[0-9]{1,9}", value) and cap < int(value) <= maximum:
        return str(cap)  # a query value as the coverage phase sends it: text
    return value


def cap_costly_values(case) -> None:
    path, method = case.operation.path, case.operation.method
    operation = SPEC["paths"][path][method.lower()]
    if case.query is None and any(p["in"] == "query" for p in operation.get("parameters", [])):
        case.query = {}
    for container, location in ((case.query, "query"), (case.body, "body")):
        if not isinstance(container, dict):
            continue
        for name, value in container.items():
            container[name] = capped(path, method, name, value)
        # Left out, a costly parameter takes its default, which the caps are for: /stream's
        # 100 ms a line times 100 lines is 10 s. It is sent at the cap instead (optional and
        # valid either way, so this changes no request's validity either).
        declared = {p["name"] for p in operation.get("parameters", []) if p["in"] == location}
        if location == "body" and "requestBody" in operation:
            ref = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
            declared = set(SPEC["components"]["schemas"][ref.rsplit("/", 1)[1]]["properties"])
        for (costly_path, name), cap in COSTLY.items():
            if costly_path == path and name in declared and name not in container:
                container[name] = cap


def sent_query_is_valid(case, response) -> bool:
    """Whether a request with nothing but query parameters was, as sent, valid: each declared
    parameter (integers and optional UUIDs here) a plain integer in its range or a UUID in its
    canonical form, undeclared ones ignored."""
    operation = SPEC["paths"][case.operation.path][case.operation.method.lower()]
    parameters = operation.get("parameters", [])
    if "requestBody" in operation or any(p["in"] != "query" or kind(p["schema"]) is None for p in parameters):
        return False
    sent = parse_qs(urlsplit(response.request.url).query, keep_blank_values=True)
    for parameter in parameters:
        values = sent.get(parameter["name"])
        if values is None:
            continue  # optional: the default applies
        if len(values) != 1:
            return False
        bounds = parameter["schema"]
        if kind(bounds) == "uuid":
            if not UUID_TEXT.fullmatch(values[0]):
                return False
        elif (
            not re.fullmatch(r"-?[0-9]{1,9}", values[0]) or not bounds["minimum"] <= int(values[0]) <= bounds["maximum"]
        ):
            return False
    return True


UUID_TEXT = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def kind(schema: dict) -> str | None:
    """ "integer", "uuid" (a UUID or nothing), or None for any other parameter schema."""
    if schema.get("type") == "integer":
        return "integer"
    if schema.get("anyOf") == [{"type": "string", "format": "uuid"}, {"type": "null"}]:
        return "uuid"
    return None


def negative_data_rejection_as_sent(ctx, response, case):
    """negative_data_rejection, except for a query that is valid as sent. schemathesis excuses
    either of two harmless negations on its own: an undeclared query parameter (ignored, as by
    most servers), or an integer mutated into a string ("4497") that reads as a valid integer
    off the wire. Combined in one request it flags them, though both services rightly accept
    it; every other negative request still goes to the real check."""
    if case.meta is not None and case.meta.generation.mode.is_negative and sent_query_is_valid(case, response):
        return None
    return negative_data_rejection(ctx, response, case)


load_all_checks()
# Every registered check, so a newer schemathesis adds its own (one narrowed, above), and
# max_response_time, which schemathesis keeps apart from the registry.
ALL_CHECKS = [
    *(negative_data_rejection_as_sent if check is negative_data_rejection else check for check in CHECKS.get_all()),
    max_response_time,
]
assert negative_data_rejection_as_sent in ALL_CHECKS and positive_data_acceptance in ALL_CHECKS


@pytest.fixture(scope="module")
def fuzz_stack(tmp_path_factory: pytest.TempPathFactory, nginx_bin: str) -> Iterator[Stack]:
    """A stack of its own: the fuzz sends a few hundred requests a second to /sync, /cpu,
    /fanout and /jobs from one address, past the expensive-path rate limit (200 r/s, burst
    400) the session stack keeps, and a 429 would be a finding about the fuzz, not the
    contract."""
    with running_stack(
        tmp_path_factory.mktemp("fuzz"),
        TWINSTACK_EXPENSIVE_RATE_LIMIT_RPS="100000",
        TWINSTACK_EXPENSIVE_RATE_LIMIT_BURST="100000",
    ) as own:
        yield own


def test_the_fuzzed_schema_is_the_published_one(fuzz_stack: Stack):
    with httpx.Client(base_url=fuzz_stack.base_url, timeout=10) as client:
        served = client.get("/async/openapi.json").json()
    served.pop("servers", None)  # where nginx mounts it (/async): the fuzz sets each prefix itself
    assert served == SPEC


@schema.parametrize()
# derandomize: CI runs the same examples every time (a new one is found by running with a
# seed locally, not by a red CI); 50 per operation, both prefixes. One health check is off, for
# a reason: too_slow, since each example is two real round trips through nginx, some of them
# waiting on purpose (/io, /db, /fanout); deadline=None for the same reason.
@settings(max_examples=50, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
def test_both_services_conform_to_the_schema_and_answer_alike(case, fuzz_stack: Stack):
    """Each generated request goes to both prefixes: each answer must pass every check, and the
    two must agree as in tests/contract (the status, and the body once the values that may
    differ are masked by their path), nginx's own request id in an error included."""
    cap_costly_values(case)
    answers = [checked_answer(case, fuzz_stack.base_url + prefix) for prefix in PREFIXES]
    (status, fastapi_body), (flask_status, flask_body) = answers
    sent = (case.method, case.formatted_path, case.query, case.headers, case.body)
    assert status == flask_status, (sent, answers)
    assert fastapi_body == flask_body, (sent, answers)


def checked_answer(case, base_url: str) -> tuple[int, Any]:
    response = case.call(base_url=base_url, timeout=30)
    checks = ALL_CHECKS
    if response.request.method not in PASSED_BY_NGINX:
        # A method the API uses nowhere (PUT, DELETE, PATCH, QUERY ...): nginx answers for
        # every path alike, 501 Not Implemented, as RFC 9110 says for a method the server
        # supports for no resource (TRACE: nginx core's 405, with Allow). That is not the 405
        # unsupported_method expects, and a 5xx to not_a_server_error, by design: both are off
        # for these requests only, and the answer is checked here instead. A method the API
        # does use (GET on a POST route, POST on a GET route) reaches the pools and keeps every
        # check, unsupported_method's 405 with Allow included.
        body = response.json()["error"]
        assert REFUSED_BY_NGINX.get(response.status_code) == body["code"], (response.status_code, body)
        assert response.status_code != 405 or response.headers.get("allow"), response.headers
        checks = [check for check in checks if check not in (not_a_server_error, unsupported_method)]
    if response.status_code >= 400:  # every error, the pools' and nginx's, in the one shape
        sent = (case.method, case.formatted_path, case.query, case.headers, case.body)
        assert response.headers["content-type"] == ["application/json"], (sent, response.status_code, response.text)
        assert set(response.json()["error"]) == ERROR_KEYS, response.text
    case.validate_response(response, checks=checks)
    return response.status_code, comparable(case, response)


def comparable(case, response) -> Any:
    """The body with what may differ between the prefixes masked (tests/contract/parity.py);
    the request id of an error is nginx's, a new one for each request."""
    media_type = response.headers.get("content-type", [""])[0].split(";")[0]
    if not response.content or media_type not in ("application/json", "application/x-ndjson"):
        return (media_type, response.content)
    side = "fastapi" if urlsplit(response.request.url).path.startswith("/async") else "flask"
    body = parity.parse(response.content, media_type)
    model = parity.model_for(case.formatted_path, response.status_code, case.method.upper())
    out = parity.masked(body, model, side, THROUGH_NGINX.get(model))
    if model is OrderPage:  # each order of a page is read by whichever worker served it
        for order in out["orders"]:
            order["served_by"] = "<masked>"
    return out


# Through nginx, besides what tests/contract masks: nginx mints a request id per request, and
# /inspect reports the prefix each request came in by.
THROUGH_NGINX = {
    ErrorBody: {("error", "request_id"): parity.ANY},
    Inspection: {
        **parity.VOLATILE[Inspection],
        ("request_id",): parity.ANY,
        ("prefix",): PREFIXES,
        ("path",): tuple(f"{prefix}/inspect" for prefix in PREFIXES),
    },
}
