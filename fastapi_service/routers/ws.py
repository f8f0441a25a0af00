"""WebSocket echo: a long-lived connection that costs the loop almost nothing while idle."""

from __future__ import annotations

from fastapi import APIRouter, WebSocket, WebSocketDisconnect

router = APIRouter(prefix="/ws", tags=["websocket"])

MAX_MESSAGE_BYTES = 64 * 1024


@router.websocket("/echo")
async def echo(websocket: WebSocket) -> None:
    """Echo every text message back; close with 1009 if one is larger than 64 KiB."""
    await websocket.accept()
    try:
        while True:
            text = await websocket.receive_text()
            if len(text.encode()) > MAX_MESSAGE_BYTES:
                await websocket.close(code=1009, reason="message too big")
                return
            await websocket.send_text(text)
    except WebSocketDisconnect:
        pass
