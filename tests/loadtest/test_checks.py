"""The load test's response checks (loadtest/checks.py): what Locust counts as a failure.

The smoke gate fails a run on its failure ratio, so a check that passed everything would let a
stack answering 500s, HTML error pages or accepted invalid orders through. Each case hands
``check``/``check_error`` a stand-in for what ``self.client.get(..., catch_response=True)``
yields in loadtest/locustfile.py, and asserts what Locust would record.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from geventhttpclient.header import Headers
from locust.contrib.fasthttp import ResponseContextManager
from locust.exception import CatchResponseError

from loadtest.checks import check, check_error


class FakeResponse:
    """The part of Locust's ResponseContextManager the checks use: the status, the body, the
    headers, and success()/failure(message), recorded in order. Locust keeps the last one called
    (test_locust_keeps_the_last_verdict_called checks that on the real class)."""

    def __init__(
        self, status: int, body: Any = None, raw: bytes | None = None, headers: dict[str, str] | None = None
    ) -> None:
        self.status_code = status
        self.content = raw if raw is not None else (b"" if body is None else json.dumps(body).encode())
        self.text = self.content.decode(errors="replace") if self.content else None
        # Locust's FastHttpUser answers with geventhttpclient's Headers, whose get() ignores
        # case (test_locust_response_headers_ignore_case checks it): so does this one.
        self.headers = Headers()
        for name, value in (headers or {}).items():
            self.headers.add(name, value)
        self.calls: list[tuple[str, str | None]] = []

    def success(self) -> None:
        self.calls.append(("success", None))

    def failure(self, message: str) -> None:
        self.calls.append(("failure", message))

    @property
    def outcome(self) -> tuple[str, str | None]:
        assert self.calls, "neither success() nor failure() was called: Locust would judge by the status alone"
        return self.calls[-1]


def error(status: int, code: str) -> dict:
    return {"error": {"status": status, "code": code, "message": "-", "details": [], "request_id": "abcdefgh"}}


def test_the_right_status_and_body_is_a_success_and_returns_the_body():
    resp = FakeResponse(201, {"order_id": "x1", "total_cents": 3998, "served_by": "1"})
    assert check(resp, 201, "order_id", "total_cents") == {"order_id": "x1", "total_cents": 3998, "served_by": "1"}
    assert resp.calls == [("success", None)]


@pytest.mark.parametrize(
    ("resp", "expected", "said"),
    [
        # A server error in the contract's shape: the status says what went wrong, the body why.
        (FakeResponse(500, error(500, "internal_error")), 200, ["expected 200, got 500", "internal_error"]),
        # nginx's 502 while a pool restarts, and a bare 503 with no body at all.
        (FakeResponse(502, error(502, "bad_gateway")), 200, ["expected 200, got 502", "bad_gateway"]),
        (FakeResponse(503), 200, ["expected 200, got 503"]),
        # Right shape, wrong status: a 200 where the order should have been created.
        (FakeResponse(200, {"order_id": "x1", "total_cents": 1}), 201, ["expected 201, got 200"]),
        # A redirect (a trailing slash, a login page) is not the answer either.
        (FakeResponse(307), 200, ["expected 200, got 307"]),
    ],
    ids=["500", "502", "503-no-body", "200-for-201", "redirect"],
)
def test_a_wrong_status_is_a_failure_that_names_both_statuses(resp: FakeResponse, expected: int, said: list[str]):
    assert check(resp, expected, "order_id") is None
    assert [name for name, _ in resp.calls] == ["failure"]
    message = resp.calls[0][1]
    for text in said:
        assert text in message


def test_a_long_error_body_is_cut_in_the_message():
    resp = FakeResponse(500, raw=b"x" * 10_000)
    check(resp, 200, "waited_ms")
    assert resp.outcome[0] == "failure" and len(resp.outcome[1]) < 300


@pytest.mark.parametrize(
    ("body", "keys", "said"),
    [
        ({"delay_ms": 20, "served_by": "1"}, ("waited_ms",), "body lacks waited_ms"),
        ({"order_id": "x1"}, ("order_id", "total_cents"), "body lacks total_cents"),
        ({}, ("order_id", "total_cents"), "body lacks order_id, total_cents"),
        # JSON, but not an object: no key can be in it.
        ([{"waited_ms": 20}], ("waited_ms",), "body lacks waited_ms"),
        (None, ("digest",), "body is not JSON"),  # an empty 200
    ],
    ids=["other-keys", "one-missing", "empty-object", "array", "empty-body"],
)
def test_the_right_status_with_the_wrong_body_is_a_failure_naming_what_is_missing(body, keys, said):
    resp = FakeResponse(200, body)
    assert check(resp, 200, *keys) is None
    assert resp.calls == [("failure", said)]


@pytest.mark.parametrize(
    "raw",
    [b"<html><body>502 Bad Gateway</body></html>", b'{"waited_ms": 20', b"\xff\xfe", b"OK"],
    ids=["html-page", "truncated-json", "not-utf8", "plain-text"],
)
def test_the_right_status_with_a_body_that_is_not_json_is_a_failure(raw: bytes):
    resp = FakeResponse(200, raw=raw)
    assert check(resp, 200, "waited_ms") is None
    assert resp.calls == [("failure", "body is not JSON")]


def test_the_expected_422_in_the_contracts_shape_is_a_success():
    resp = FakeResponse(422, error(422, "validation_error"))
    check_error(resp, 422, "validation_error")
    assert resp.calls == [("success", None)]


@pytest.mark.parametrize(
    ("resp", "said"),
    [
        # The invalid order was accepted: the worst outcome, and it must not count as a success.
        (FakeResponse(201, {"order_id": "x1", "total_cents": 0}), "expected 422, got 201"),
        (FakeResponse(500, error(500, "internal_error")), "expected 422, got 500"),
        # 422, but FastAPI's own error shape instead of the contract's.
        (FakeResponse(422, {"detail": [{"loc": ["body"], "msg": "-", "type": "missing"}]}), "body lacks error"),
        (FakeResponse(422, raw=b"Unprocessable"), "body is not JSON"),
    ],
    ids=["accepted", "server-error", "framework-shape", "not-json"],
)
def test_an_expected_error_that_did_not_come_is_a_failure(resp: FakeResponse, said: str):
    check_error(resp, 422, "validation_error")
    name, message = resp.outcome
    assert name == "failure" and said in message
    assert ("success", None) not in resp.calls


def test_an_expected_error_with_another_code_is_a_failure():
    """check() has already called success() for the status and shape; the failure that follows
    is the verdict Locust keeps."""
    resp = FakeResponse(422, error(422, "bad_request"))
    check_error(resp, 422, "validation_error")
    assert resp.outcome == ("failure", "expected error code validation_error, got bad_request")


def test_locust_keeps_the_last_verdict_called():
    """What FakeResponse.outcome assumes, on Locust's own class: success() then failure() is
    reported as a failure, with the message."""
    reported: list[dict] = []
    resp = ResponseContextManager.__new__(ResponseContextManager)  # no HTTP response behind it
    resp._request_event = type("Event", (), {"fire": staticmethod(lambda **kw: reported.append(kw))})()
    resp.request_meta, resp._catch_response = {}, True
    with resp:
        resp.success()
        resp.failure("expected error code validation_error, got bad_request")
    assert len(reported) == 1 and isinstance(reported[0]["exception"], CatchResponseError)
    assert str(reported[0]["exception"]) == "expected error code validation_error, got bad_request"
