"""Where the FastAPI service imitates Flask (werkzeug), so both answer alike: the body limit,
HEAD wherever GET, a 405's Allow naming HEAD, and an undecodable body called invalid JSON.

FastAPI's own path would be: no body limit of its own, 405 for HEAD, and a 400 "There was an
error parsing the body". The Flask service's imitations of FastAPI are in
flask_service/fastapi_parity.py.
"""

from __future__ import annotations

import re

from fastapi.routing import APIRouter
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.routing import get_route_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from twinstack_contract.errors import ContractError, invalid_json
from twinstack_contract.limits import MAX_BODY_BYTES


class BodyLimitMiddleware:
    """A request body over MAX_BODY_BYTES is refused with 413, as the Flask service refuses it.

    nginx already refuses one at the edge, but a pool reached directly (its own port: a health
    checker, another proxy, a misrouted client) must not read an unbounded body into memory,
    and must answer as the sync pool does. Checked when the app reads the body, as werkzeug
    checks it: a declared Content-Length before the first byte, a chunked body as it arrives.
    The HTTPException reaches errors.http_error (FastAPI re-raises it from the body read), which
    answers in the contract's shape; its message is werkzeug's, so both say the same.
    """

    def __init__(self, app: ASGIApp, max_bytes: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        received = -1  # -1: the body was not read yet (most requests never read one)

        async def limited_receive() -> Message:
            nonlocal received
            if received < 0:
                declared = Headers(scope=scope).get("content-length", "")
                if declared.isdigit() and int(declared) > self.max_bytes:
                    raise HTTPException(413, "Request Entity Too Large")
                received = 0
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise HTTPException(413, "Request Entity Too Large")
            return message

        await self.app(scope, limited_receive, send)


class HeadMiddleware:
    """HEAD wherever GET, as the Flask service (werkzeug) answers.

    RFC 9110 9.3.2: a general-purpose server must support HEAD on what it serves with GET.
    FastAPI routes only the methods a route declares, so HEAD /async/health was a 405 while
    HEAD /sync/health was a 200. Declaring HEAD on each route would put a HEAD operation for
    every path into the published schema instead. Here a HEAD is routed as a GET, so its
    headers, Content-Length included, are the GET's; the server's own scope still says HEAD, so
    it sends no body (uvicorn drops a HEAD's body, as ASGI servers do for Starlette's own HEAD
    routes). A 405's Allow names HEAD beside GET: errors.http_error adds it.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return
        as_get = {**scope, "method": "GET"}
        try:
            await self.app(as_get, receive, send)
        finally:
            # The route the GET matched, for the metrics and the access log (observability.py).
            if "route" in as_get:
                scope["route"] = as_get["route"]


# The detail fastapi.routing uses for a body it could not decode.
BODY_PARSE_ERROR = "There was an error parsing the body"


def as_flask_error(exc: HTTPException) -> ContractError | None:
    """FastAPI raises BODY_PARSE_ERROR before any dependency runs when a JSON body cannot even
    be decoded (invalid UTF-8): the contract calls that invalid JSON, as Flask does."""
    if exc.status_code == 400 and exc.detail == BODY_PARSE_ERROR:
        return invalid_json()
    return None


def allow_with_head(status: int, headers: dict[str, str] | None, scope: Scope) -> dict[str, str] | None:
    """A 405's Allow names every method of every route on the path (Starlette names only the
    first route's: GET /orders and POST /orders are two routes), and HEAD wherever it names GET
    (HeadMiddleware serves it), as werkzeug's does."""
    if status != 405 or not headers or "Allow" not in headers:
        return headers
    allowed = {m.strip() for m in headers["Allow"].split(",") if m.strip()}
    path = get_route_path(scope)
    for pattern, methods in scope["app"].state.route_methods:
        if pattern.match(path):
            allowed |= methods
    if "GET" in allowed:
        allowed.add("HEAD")
    return {**headers, "Allow": ", ".join(sorted(allowed))}


def route_methods(routers: list[APIRouter]) -> list[tuple[re.Pattern[str], set[str]]]:
    """Each route's path pattern and methods, for allow_with_head (stored on app.state)."""
    return [(route.path_regex, set(route.methods)) for r in routers for route in r.routes if hasattr(route, "methods")]
