"""The async pool's gunicorn worker: uvicorn's, with the WebSocket limits set in the server.

A limit checked by the app comes too late: by then uvicorn has read and decompressed the whole
message (16 MiB by default, and permessage-deflate turns a few KiB on the wire into that).
Here the server refuses an oversized message while reading it (close code 1009), and
compression is off, so no small frame can inflate in memory. gunicorn.conf.py names this
class; uvicorn-worker passes CONFIG_KWARGS to uvicorn's Config.
"""

from __future__ import annotations

from typing import Any, ClassVar

from uvicorn_worker import UvicornWorker

from .routers.ws import MAX_MESSAGE_BYTES


class Worker(UvicornWorker):
    CONFIG_KWARGS: ClassVar[dict[str, Any]] = {
        **UvicornWorker.CONFIG_KWARGS,
        "ws_max_size": MAX_MESSAGE_BYTES,
        # Off: a compressed message is bounded on the wire, not in memory (a deflate bomb).
        "ws_per_message_deflate": False,
    }
