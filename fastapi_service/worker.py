"""The async pool's gunicorn worker: uvicorn's, with two changes made in the server.

WebSocket limits. A limit checked by the app comes too late: by then uvicorn has read and
decompressed the whole message (16 MiB by default, and permessage-deflate turns a few KiB on
the wire into that). Here the server refuses an oversized message while reading it (close
code 1009), and compression is off, so no small frame can inflate in memory.

One write per response. uvicorn writes a response's headers and its body with two calls.
A worker killed between them leaves nginx with headers and no body: the response has begun,
so nginx cannot retry it on another worker and can only cut the client's connection. Writes
made in one turn of the event loop are joined and leave in one call on the next turn, so a
killed worker has sent all of a (small) response or none of it, and nginx retries a GET it
never got an answer to (nginx/snippets/retry.conf).

gunicorn.conf.py names this class; uvicorn-worker passes CONFIG_KWARGS to uvicorn's Config.
"""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn_worker import UvicornWorker

from .routers.ws import MAX_MESSAGE_BYTES


class OneWritePerTurn:
    """A transport whose writes within one event-loop turn reach the socket as one write.
    Everything else is the real transport's; closing sends what is pending first."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] = []

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not self._pending:
            self._loop.call_soon(self.flush)
        self._pending.append(bytes(data))

    def flush(self) -> None:
        if self._pending:
            data = b"".join(self._pending)
            self._pending.clear()
            if not self._transport.is_closing():
                self._transport.write(data)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def abort(self) -> None:
        self._pending.clear()
        self._transport.abort()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class HttpProtocol(HttpToolsProtocol):
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(OneWritePerTurn(transport, self.loop))  # type: ignore[arg-type]


class Worker(UvicornWorker):
    CONFIG_KWARGS: ClassVar[dict[str, Any]] = {
        **UvicornWorker.CONFIG_KWARGS,
        "http": HttpProtocol,
        "ws_max_size": MAX_MESSAGE_BYTES,
        # The app applies X-Forwarded-* itself, from trusted peers only (middleware.py), and
        # gunicorn.conf.py trusts no one here (forwarded_allow_ips); uvicorn's own wrapper
        # would still look at every request's peer and headers for nothing.
        "proxy_headers": False,
        # Off: a compressed message is bounded on the wire, not in memory (a deflate bomb).
        "ws_per_message_deflate": False,
    }
