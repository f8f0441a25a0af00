"""The async pool's worker: its transport joins a response's writes into one."""

from __future__ import annotations

import asyncio

from fastapi_service.routers.ws import MAX_MESSAGE_BYTES
from fastapi_service.worker import HttpProtocol, OneWritePerTurn, Worker


class Recorder:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = self.aborted = False

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def is_closing(self) -> bool:
        return self.closed or self.aborted

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = True

    def get_extra_info(self, name: str) -> str:
        return f"info:{name}"


def test_writes_in_one_turn_leave_as_one_write_on_the_next():
    async def scenario() -> list[bytes]:
        real = Recorder()
        transport = OneWritePerTurn(real, asyncio.get_running_loop())
        transport.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")
        transport.write(b"{}")
        assert real.writes == []  # nothing reaches the socket within the turn
        await asyncio.sleep(0)
        transport.write(b"next")
        await asyncio.sleep(0)
        assert transport.get_extra_info("peername") == "info:peername"  # the rest is the real one's
        return real.writes

    assert asyncio.run(scenario()) == [b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}", b"next"]


def test_close_sends_what_is_pending_first_and_abort_drops_it():
    async def scenario() -> tuple[Recorder, Recorder]:
        loop = asyncio.get_running_loop()
        closed, aborted = Recorder(), Recorder()
        for real in (closed, aborted):
            OneWritePerTurn(real, loop).write(b"bye")
        one, two = OneWritePerTurn(closed, loop), OneWritePerTurn(aborted, loop)
        one.write(b"last")
        one.close()
        two.write(b"lost")
        two.abort()
        await asyncio.sleep(0)  # the scheduled flushes find the transports closed
        return closed, aborted

    closed, aborted = asyncio.run(scenario())
    assert closed.writes == [b"last"] and closed.closed
    assert aborted.writes == [] and aborted.aborted


def test_the_worker_sets_the_limits_in_the_server():
    assert Worker.CONFIG_KWARGS["http"] is HttpProtocol
    assert Worker.CONFIG_KWARGS["ws_max_size"] == MAX_MESSAGE_BYTES == 64 * 1024
    assert Worker.CONFIG_KWARGS["ws_per_message_deflate"] is False
