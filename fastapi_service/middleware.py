"""Proxy awareness for the ASGI app, at the app so it holds under any ASGI server; and where
FastAPI alone would answer otherwise than the Flask service: the body limit and HEAD.

From a trusted proxy (nginx) the app takes: the client address and scheme (uvicorn's own
ProxyHeadersMiddleware), the path prefix nginx stripped (``X-Forwarded-Prefix`` becomes the
ASGI ``root_path``, so the docs find ``/async/openapi.json``), and the request id. From anyone
else those headers are ignored. gunicorn.conf.py turns the server's copy of this off
(``forwarded_allow_ips``), because it would rewrite the peer before this check could see it.
"""

from __future__ import annotations

from ipaddress import IPv4Network, IPv6Network

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from twinstack_contract.proxy import TrustedProxies, clean_prefix, request_id


class ForwardedMiddleware:
    """Sets ``state["request_id"]`` and ``state["via_trusted_proxy"]``; the request id goes back
    to the client in ObservabilityMiddleware's response headers. With ``with_request_id``
    off, no id is read or minted (the request id is "")."""

    def __init__(self, app: ASGIApp, trusted: list[IPv4Network | IPv6Network], with_request_id: bool = True) -> None:
        self.trusted = TrustedProxies(trusted)
        self.with_request_id = with_request_id
        self.app = app
        # Only ever called for a trusted peer: the gate is here, so its own check always passes.
        self.proxied = ProxyHeadersMiddleware(app, trusted_hosts=self.trusted.cidrs())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        trusted = (client[0] if client else None) in self.trusted
        state = scope.setdefault("state", {})
        state["via_trusted_proxy"] = trusted
        if not trusted:
            state["request_id"] = request_id(None, False) if self.with_request_id else ""
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        state["request_id"] = request_id(headers.get("x-request-id"), True) if self.with_request_id else ""
        prefix = clean_prefix(headers.get("x-forwarded-prefix"))
        if prefix:
            # ASGI: path includes root_path; Starlette routes on path minus root_path.
            scope["root_path"] = scope.get("root_path", "") + prefix
            scope["path"] = prefix + scope["path"]
            if scope.get("raw_path"):
                scope["raw_path"] = prefix.encode() + scope["raw_path"]
        await self.proxied(scope, receive, send)


# nginx's client_max_body_size 64k, and Flask's MAX_CONTENT_LENGTH.
MAX_BODY_BYTES = 64 * 1024


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
