"""The workloads, identical in both services so any difference measured is the server's."""

from __future__ import annotations

import hashlib
import os
import time

from twinstack_contract.models import StreamChunk


def cpu_work(rounds: int) -> str:
    """Chain ``rounds`` SHA-256 hashes: pure CPU, holds the GIL, about 1 µs a round."""
    digest = b"twinstack"
    for _ in range(rounds):
        digest = hashlib.sha256(digest).digest()
    return digest.hex()


def worker_id() -> str:
    """Which process answered, as its pid: the lab and the tests count distinct workers with
    it. No host name: a public response should not name the machine behind the proxy."""
    return str(os.getpid())


def stream_line(index: int, total: int, started: float) -> bytes:
    """One NDJSON line of /stream: chunk ``index`` (0-based) of ``total``."""
    elapsed_ms = (time.perf_counter() - started) * 1000
    chunk = StreamChunk(chunk=index + 1, of=total, elapsed_ms=elapsed_ms, served_by=worker_id())
    return chunk.model_dump_json().encode() + b"\n"
