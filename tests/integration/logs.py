"""Reading the stack's logs in tests: every line of nginx's access log and of the pools' logs
is a JSON object (docs/operations.md promises it), so the reader refuses any other line instead of
skipping it. Files logrotate rotated away (``name.log.1``, ``name.log.2.gz`` ...) are read
too, oldest first."""

from __future__ import annotations

import gzip
import json
import re
import time
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path

JSON_LOGS = ("nginx", "fastapi", "flask")


ROTATED = re.compile(r"\.log\.(\d+)(\.gz)?$")


def files(log_dir: Path, name: str) -> list[Path]:
    rotated = [p for p in log_dir.glob(f"{name}.log.*") if ROTATED.search(p.name)]
    rotated.sort(key=lambda p: int(ROTATED.search(p.name).group(1)), reverse=True)
    return [*rotated, log_dir / f"{name}.log"]


def read(path: Path) -> str:
    return gzip.decompress(path.read_bytes()).decode() if path.suffix == ".gz" else path.read_text()


def records(log_dir: Path, name: str) -> list[dict]:
    """Every line of a JSON log as a dict. Only a last line still being written (no newline
    yet) is left for the next read; any other line that is not a JSON object fails."""
    out = []
    for path in files(log_dir, name):
        if not path.exists():
            continue
        text = read(path)
        complete = text[: text.rfind("\n") + 1]
        for number, line in enumerate(complete.splitlines(), 1):
            try:
                record = json.loads(line)
            except ValueError:
                record = None
            if not isinstance(record, dict):
                raise AssertionError(f"{path.name}:{number} is not a JSON object: {line[:200]!r}")
            out.append(record)
    return out


def by_request_id(log_dir: Path, name: str, request_ids: Iterable[str], timeout_s: float = 10) -> dict[str, dict]:
    """The lines of these requests, waiting for them: nginx writes its access log in blocks, at
    least once a second (templates/logging.conf.template)."""
    wanted = set(request_ids)
    deadline = time.monotonic() + timeout_s
    while True:
        found = {r["request_id"]: r for r in records(log_dir, name) if r.get("request_id") in wanted}
        if len(found) == len(wanted) or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


def served_interval(record: dict, slack_s: float = 0.002) -> tuple[float, float]:
    """When the app served a request, by its own clock: logged at the end (to the ms), with
    its duration. Trimmed by ``slack_s`` at both ends, so two requests served one after the
    other on one worker never seem to overlap through the log's rounding."""
    end = datetime.fromisoformat(record["time"]).timestamp()
    return end - record["duration_ms"] / 1000 + slack_s, end - slack_s


def max_overlap(intervals: Iterable[tuple[float, float]]) -> int:
    """The most intervals open at one instant."""
    events = sorted(event for start, end in intervals for event in ((start, 1), (end, -1)))
    open_now = peak = 0
    for _, step in events:
        open_now += step
        peak = max(peak, open_now)
    return peak
