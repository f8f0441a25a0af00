"""Which peers may tell a service who the client is.

nginx sets X-Forwarded-For/Proto/Host/Prefix and X-Request-ID. A service believes them only
when the TCP peer is a configured proxy; from anyone else they are ignored, so a client that
reaches a service port directly cannot forge its address or prefix.
"""

from __future__ import annotations

import functools
import re
import secrets
from collections.abc import Sequence
from ipaddress import IPv4Network, IPv6Network, ip_address

REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._-]{8,128}$")
PREFIX_RE = re.compile(r"^(/[A-Za-z0-9_-][A-Za-z0-9._-]*)+$")  # no "." or ".." segments


def is_trusted(peer: str | None, networks: Sequence[IPv4Network | IPv6Network]) -> bool:
    if not peer:
        return False
    try:
        addr = ip_address(peer)
    except ValueError:
        return False
    return any(addr in net for net in networks)


class TrustedProxies:
    """The configured proxy networks as a set of peers: ``peer in proxies``. Each peer's answer
    is remembered (parsing an address and testing every network, on every request, cost more
    than the rest of the check), for a bounded number of peers, as uvicorn's own check does."""

    def __init__(self, networks: Sequence[IPv4Network | IPv6Network]) -> None:
        self.networks = tuple(networks)
        self._trusts = functools.lru_cache(maxsize=4096)(self._compute)

    def __contains__(self, peer: str | None) -> bool:
        if not peer or len(peer) > 64:  # no address is longer; never pin a long key
            return False
        return self._trusts(peer)

    def _compute(self, peer: str) -> bool:
        return is_trusted(peer, self.networks)

    def cidrs(self) -> list[str]:
        return [str(net) for net in self.networks]


def clean_prefix(value: str | None) -> str:
    """A forwarded prefix is used only if it is a plain path like ``/async``."""
    if value and PREFIX_RE.match(value):
        return value
    return ""


def request_id(value: str | None, trusted: bool) -> str:
    """Keep the proxy's request id; mint one for direct calls or a malformed value."""
    if trusted and value and REQUEST_ID_RE.match(value):
        return value
    return secrets.token_hex(16)  # 32 hex digits, like nginx's $request_id
