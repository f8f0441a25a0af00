"""Response checks: a wrong status or body is a failure, an expected error is a success."""

from __future__ import annotations

import json
from typing import Any


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
