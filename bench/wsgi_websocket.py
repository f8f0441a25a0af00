"""The best a WSGI app can do with a WebSocket handshake (claim 11): answer it, then return.

PEP 3333 calls the app with one request and sends the one response it returns; then the
server finishes the exchange (gunicorn's sync worker closes the connection). The interface has
no call through which the app could go on reading and writing frames after its 101. Lab-only:
twinstack's Flask service has no WebSocket route at all.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable, Iterable

# RFC 6455, section 1.3: the server proves it read the key by hashing it with this GUID.
WEBSOCKET_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def app(environ: dict, start_response: Callable) -> Iterable[bytes]:
    if environ["PATH_INFO"] == "/health":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]
    key = environ.get("HTTP_SEC_WEBSOCKET_KEY")
    if not key or environ.get("HTTP_UPGRADE", "").lower() != "websocket":
        start_response("426 Upgrade Required", [("Content-Type", "text/plain"), ("Upgrade", "websocket")])
        return [b"a WebSocket handshake is expected here\n"]
    accept = base64.b64encode(hashlib.sha1((key + WEBSOCKET_GUID).encode()).digest()).decode()
    start_response(
        "101 Switching Protocols",
        # gunicorn passes Connection: Upgrade through (it is how its own escape hatch works);
        # Content-Length: 0 keeps it from framing the empty body as chunks.
        [
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Accept", accept),
            ("Content-Length", "0"),
        ],
    )
    return []  # and with that the app is done: nothing of it is left to answer a frame
