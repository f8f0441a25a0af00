"""Proxy awareness for the ASGI app, at the app so it holds under any ASGI server.

From a trusted proxy (nginx) the app takes: the client address and scheme (uvicorn's own
ProxyHeadersMiddleware), the path prefix nginx stripped (``X-Forwarded-Prefix`` becomes the
ASGI ``root_path``, so the docs find ``/async/openapi.json``), and the request id. From anyone
else those headers are ignored. gunicorn.conf.py turns the server's copy of this off
(``forwarded_allow_ips``), because it would rewrite the peer before this check could see it.
"""

from __future__ import annotations

from ipaddress import IPv4Network, IPv6Network

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from twinstack_contract.proxy import clean_prefix, is_trusted, request_id


class ForwardedMiddleware:
    def __init__(self, app: ASGIApp, trusted: list[IPv4Network | IPv6Network]) -> None:
        self.trusted = trusted
        self.app = ProxyHeadersMiddleware(app, trusted_hosts=[str(net) for net in trusted])

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        client = scope.get("client")
        trusted = is_trusted(client[0] if client else None, self.trusted)
        rid = request_id(headers.get("x-request-id"), trusted)
        state = scope.setdefault("state", {})
        state["request_id"] = rid
        state["via_trusted_proxy"] = trusted
        prefix = clean_prefix(headers.get("x-forwarded-prefix")) if trusted else ""
        if prefix:
            # ASGI: path includes root_path; Starlette routes on path minus root_path.
            scope["root_path"] = scope.get("root_path", "") + prefix
            scope["path"] = prefix + scope["path"]
            if scope.get("raw_path"):
                scope["raw_path"] = prefix.encode() + scope["raw_path"]

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message)["x-request-id"] = rid
            await send(message)

        await self.app(scope, receive, send_with_id)
