"""Proxy awareness for the WSGI app: werkzeug's ProxyFix, applied only to trusted peers.

ProxyFix trusts by hop count, not by address; this gate makes it address-based, so a client
that reaches the gunicorn port directly cannot forge X-Forwarded-* or X-Request-ID.
"""

from __future__ import annotations

from collections.abc import Iterable
from ipaddress import IPv4Network, IPv6Network
from typing import Any

from werkzeug.middleware.proxy_fix import ProxyFix

from twinstack_runtime.proxy import TrustedProxies, clean_prefix, request_id


class TrustedProxyFix:
    """Sets ``twinstack.request_id`` and ``twinstack.via_trusted_proxy`` in the environ and
    echoes the id in ``X-Request-ID``. With ``with_request_id`` off, no id is read, minted or
    echoed (the request id is "")."""

    def __init__(self, app: Any, trusted: list[IPv4Network | IPv6Network], with_request_id: bool = True) -> None:
        self.app = app
        self.trusted = TrustedProxies(trusted)
        self.with_request_id = with_request_id
        # One hop: nginx is the only proxy in front of gunicorn.
        self.proxied = ProxyFix(app, x_for=1, x_proto=1, x_host=1, x_prefix=1)

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        trusted = environ.get("REMOTE_ADDR") in self.trusted
        environ["twinstack.via_trusted_proxy"] = trusted
        if self.with_request_id:
            rid = environ["twinstack.request_id"] = request_id(environ.get("HTTP_X_REQUEST_ID"), trusted)

            def respond(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
                return start_response(status, [*headers, ("X-Request-ID", rid)], exc_info)

        else:
            environ["twinstack.request_id"] = ""
            respond = start_response
        if not trusted:
            return self.app(environ, respond)
        if not clean_prefix(environ.get("HTTP_X_FORWARDED_PREFIX")):
            environ.pop("HTTP_X_FORWARDED_PREFIX", None)
        return self.proxied(environ, respond)
