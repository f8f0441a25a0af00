"""Proxy awareness for the WSGI app: werkzeug's ProxyFix, applied only to trusted peers.

ProxyFix trusts by hop count, not by address; this gate makes it address-based, so a client
that reaches the gunicorn port directly cannot forge X-Forwarded-* or X-Request-ID.
"""

from __future__ import annotations

from collections.abc import Iterable
from ipaddress import IPv4Network, IPv6Network
from typing import Any

from werkzeug.middleware.proxy_fix import ProxyFix

from twinstack_contract.proxy import clean_prefix, is_trusted, request_id


class TrustedProxyFix:
    def __init__(self, app: Any, trusted: list[IPv4Network | IPv6Network]) -> None:
        self.app = app
        self.trusted = trusted
        # One hop: nginx is the only proxy in front of gunicorn.
        self.proxied = ProxyFix(app, x_for=1, x_proto=1, x_host=1, x_prefix=1)

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        trusted = is_trusted(environ.get("REMOTE_ADDR"), self.trusted)
        rid = request_id(environ.get("HTTP_X_REQUEST_ID"), trusted)
        environ["twinstack.request_id"] = rid
        environ["twinstack.via_trusted_proxy"] = trusted

        def start_with_id(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            headers = [(k, v) for k, v in headers if k.lower() != "x-request-id"] + [("X-Request-ID", rid)]
            return start_response(status, headers, exc_info)

        if not trusted:
            return self.app(environ, start_with_id)
        if not clean_prefix(environ.get("HTTP_X_FORWARDED_PREFIX")):
            environ.pop("HTTP_X_FORWARDED_PREFIX", None)
        return self.proxied(environ, start_with_id)
