"""Helpers the test layers share (fixtures live in the conftest files)."""

from __future__ import annotations

import ast
import contextlib
import os
import runpy
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from native.settings import deployed
from twinstack_runtime.ports import free_port

__all__ = ["free_port"]  # re-exported: the tests' one way to pick a port

ROOT = Path(__file__).resolve().parent.parent

# The halves this project has, from its files (parts.yml): a test that runs on each half takes
# its prefixes from here. A test of one half only lives in that half's files (tests/integration/
# async_half, tests/fastapi_service, ...), one comparing both in the tests of both.
HALVES = deployed()
PREFIXES = tuple(f"/{half.prefix}" for half in HALVES)


def require_binary(path: str | None, what: str) -> str:
    """A missing system dependency fails in CI (CI=true) and skips, with the reason, elsewhere."""
    if path:
        return path
    message = f"{what} is not installed (`make test` installs it when run as root)"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


def load_conf(service: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, **env: str) -> dict:
    """A service's gunicorn.conf.py as gunicorn reads it, with these variables set."""
    monkeypatch.setenv("TWINSTACK_RUN_DIR", str(tmp_path))
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return runpy.run_path(str(ROOT / service / "gunicorn.conf.py"))


def sessions_opened(database_url: str) -> int:
    """How many sessions PostgreSQL has opened in this database so far (this one included):
    the difference around a load run is what the pools opened during it, plus one."""
    import psycopg

    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT sessions FROM pg_stat_database WHERE datname = current_database()").fetchone()
    return row[0]


@contextmanager
def serving(app: object) -> Iterator[str]:
    """An ASGI app under uvicorn on a free loopback port, in a thread, while the block runs."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "the app did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def wait_until(predicate, what, deadline: float, lock: threading.Lock | None = None) -> None:
    """Poll ``predicate`` (under ``lock``, if given) until it holds; fail at ``deadline``
    (time.monotonic()) saying what it waited for: ``what``, or what ``what()`` says then."""
    while True:
        with lock or contextlib.nullcontext():
            if predicate():
                return
        assert time.monotonic() < deadline, f"timed out waiting for {what() if callable(what) else what}"
        time.sleep(0.05)


def modules(*folders: str) -> list[Path]:
    return sorted(path for folder in folders for path in (ROOT / folder).rglob("*.py"))


def imported(text: str, package: tuple[str, ...]) -> set[str]:
    """Every module a file of ``package`` imports (and each name it takes from one), relative
    imports resolved."""
    names = set()
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = list(package[: len(package) - node.level + 1]) if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            names.add(module)
            names |= {f"{module}.{alias.name}" for alias in node.names}
    return names


def imports_of(path: Path) -> set[str]:
    return imported(path.read_text(), path.relative_to(ROOT).with_suffix("").parts[:-1])


def clean_environment() -> dict[str, str]:
    """This process's environment without the caller's own TWINSTACK_* settings (a developer's
    shell, a `make test` run), which must not change what a test expects."""
    return {k: v for k, v in os.environ.items() if not k.startswith("TWINSTACK_")}


def native_cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``python -m native ARGS`` as a program beside the stack calls it: a clean environment
    plus ``env``, help formatted for 80 columns."""
    return subprocess.run(
        [sys.executable, "-m", "native", *args], cwd=ROOT, env={**clean_environment(), "COLUMNS": "80", **env},
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
