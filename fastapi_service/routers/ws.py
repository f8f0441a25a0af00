"""WebSocket echo: a long-lived connection that costs the loop almost nothing while idle.

Bounded everywhere: the server refuses a message over 64 KiB while reading it (1009, see
fastapi_service/worker.py), nginx limits how many one client may hold open, and here a socket
silent for ``ws_idle_timeout_s`` or open for ``ws_max_lifetime_s`` is closed (1001).
"""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, WebSocket, WebSocketDisconnect

router = APIRouter(prefix="/ws", tags=["websocket"])

MAX_MESSAGE_BYTES = 64 * 1024
GOING_AWAY = 1001


@router.websocket("/echo")
async def echo(websocket: WebSocket) -> None:
    """Echo every text message back until the client leaves or a time limit is reached."""
    settings = websocket.app.state.settings
    loop = asyncio.get_running_loop()
    closes_at = loop.time() + settings.ws_max_lifetime_s
    await websocket.accept()
    try:
        while (left := closes_at - loop.time()) > 0:
            try:
                async with asyncio.timeout(min(settings.ws_idle_timeout_s, left)):
                    text = await websocket.receive_text()
            except TimeoutError:
                break
            await websocket.send_text(text)
        await websocket.close(code=GOING_AWAY, reason="idle or lifetime limit reached")
    except WebSocketDisconnect:
        pass
