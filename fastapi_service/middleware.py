"""Proxy awareness for the ASGI app, at the app so it holds under any ASGI server.

From a trusted proxy (nginx) the app takes: the client address and scheme (uvicorn's own
ProxyHeadersMiddleware), the path prefix nginx stripped (``X-Forwarded-Prefix`` becomes the
ASGI ``root_path``, so the docs find ``/async/openapi.json``), and the request id. From anyone
else those headers are ignored. gunicorn.conf.py turns the server's copy of this off
(``forwarded_allow_ips``), because it would rewrite the peer before this check could see it.
"""

from __future__ import annotations

from ipaddress import IPv4Network, IPv6Network

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from twinstack_runtime.proxy import TrustedProxies, clean_prefix, request_id


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
