"""Property-based fuzzing (schemathesis + Hypothesis) of the FastAPI OpenAPI schema against
*both* services through nginx: the contract is shared, so every generated request, valid or
not, must get the same status from /async and /sync, never a 5xx, and every 4xx in the JSON
error shape. Bounded: a fixed number of examples per operation, and operations whose cost is
a deliberate wait (up to 30 s by design) are left to the contract tests."""

from __future__ import annotations

import json

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from fastapi_service.main import create_app
from fastapi_service.settings import Settings

pytestmark = pytest.mark.integration

schema = schemathesis.openapi.from_dict(create_app(Settings()).openapi()).exclude(
    path_regex=r"^/(io|fanout|stream|lab/.*)$"
)

ERROR_KEYS = {"status", "code", "message", "details", "request_id"}


@schema.parametrize()
@settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck))
def test_both_services_answer_the_same_and_never_5xx(case, stack):
    answers = {}
    for prefix in ("/async", "/sync"):
        response = case.call(base_url=stack.base_url + prefix, timeout=30)
        assert response.status_code < 500, (prefix, case.path, response.status_code, response.text[:300])
        if response.status_code >= 400:
            body = json.loads(response.content)
            assert set(body["error"]) == ERROR_KEYS, (prefix, body)
            assert body["error"]["status"] == response.status_code
        answers[prefix] = response.status_code
    assert answers["/async"] == answers["/sync"], (case.method, case.path, case.query, case.body, answers)
