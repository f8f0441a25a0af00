"""The real stack (supervisord, nginx, both gunicorn pools, downstream) on free ports.

Started once per session through ``python -m native up``, the very entry point `make up` uses,
with its own run and log directories, so it runs beside a user's stack on the default ports.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from native.certificates import make_certificate
from tests.support import ROOT, free_port

SYNC_WORKERS = 2
# For a stack whose load all comes from one client address (the test's): nginx's per-client
# rate limits, raised out of the way. They are tested on their own (test_hardening.py); under a
# load test they would only refuse the load with 429.
ONE_CLIENT_LOAD = dict(
    TWINSTACK_RATE_LIMIT_RPS="1000000",
    TWINSTACK_RATE_LIMIT_BURST="1000000",
    TWINSTACK_EXPENSIVE_RATE_LIMIT_RPS="1000000",
    TWINSTACK_EXPENSIVE_RATE_LIMIT_BURST="1000000",
)


@dataclass
class Stack:
    env: dict[str, str]
    run_dir: Path
    log_dir: Path
    base_url: str = field(init=False)

    def __post_init__(self) -> None:
        self.base_url = f"http://127.0.0.1:{self.env['TWINSTACK_HTTP_PORT']}"

    @property
    def https_url(self) -> str:
        assert self.env.get("TWINSTACK_TLS") == "true", "this stack serves no HTTPS"
        return f"https://localhost:{self.env['TWINSTACK_TLS_PORT']}"

    @property
    def certificate(self) -> str:
        return self.env["TWINSTACK_TLS_CERTIFICATE"]

    def native(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "native", *args], cwd=ROOT, env=self.env, capture_output=True, text=True, check=check
        )

    def stop(self) -> None:
        """Down, then its database deleted: a test stack leaves nothing behind."""
        self.native("down", check=False)
        self.native("delete-data", check=False)

    def ctl(self, *args: str) -> str:
        cmd = [str(Path(sys.prefix) / "bin" / "supervisorctl"), "-c", str(ROOT / "native/supervisord.conf"), *args]
        full_env = {**self.env, "TWINSTACK_RUN_DIR": str(self.run_dir), "TWINSTACK_LOG_DIR": str(self.log_dir)}
        full_env.setdefault("TWINSTACK_ROOT", str(ROOT))
        return subprocess.run(cmd, env=full_env, capture_output=True, text=True).stdout

    def master_pid(self, program: str, timeout_s: float = 10) -> int:
        """A program's pid once supervisord counts it RUNNING (STARTING for its first
        seconds, startsecs, even when it already serves)."""
        deadline = time.monotonic() + timeout_s
        while not (m := re.search(rf"^{program}\s+RUNNING\s+pid (\d+)", status := self.ctl("status"), re.M)):
            assert time.monotonic() < deadline, status
            time.sleep(0.1)
        return int(m.group(1))

    def client(self, **kwargs) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, timeout=30, **kwargs)


def make_stack(tmp: Path, **extra: str) -> Stack:
    env = dict(os.environ)
    defaults = dict(
        TWINSTACK_HTTP_PORT=str(free_port()),
        TWINSTACK_ASYNC_PORT=str(free_port()),
        TWINSTACK_SYNC_PORT=str(free_port()),
        TWINSTACK_DOWNSTREAM_PORT=str(free_port()),
        TWINSTACK_LOCUST_PORT=str(free_port()),
        TWINSTACK_NGINX_STATUS_PORT=str(free_port()),
        TWINSTACK_DB_PORT=str(free_port()),
        TWINSTACK_RUN_DIR=str(tmp / "run"),
        TWINSTACK_LOG_DIR=str(tmp / "logs"),
        TWINSTACK_SYNC_WORKERS=str(SYNC_WORKERS),
        TWINSTACK_SYNC_WORKER_CLASS="sync",
        TWINSTACK_ASYNC_WORKERS="2",
        # The serving-model test sends 50 concurrent requests to 2 sync workers on purpose.
        TWINSTACK_SYNC_MAX_INFLIGHT="100",
        TWINSTACK_CORS_ORIGIN_REGEX=r"^https://app\.example\.test$",
    )
    env.update(defaults, **extra)
    return Stack(env=env, run_dir=tmp / "run", log_dir=tmp / "logs")


def tls_settings(tmp: Path, redirect: bool = False) -> dict[str, str]:
    """HTTPS on a free port with a certificate made for localhost, as `make up TLS=1` serves it;
    by default the plain port keeps serving (TWINSTACK_TLS_REDIRECT=false), so one stack answers
    both and a test compares them."""
    cert, key = make_certificate(tmp / "certs")
    return dict(
        TWINSTACK_TLS="true",
        TWINSTACK_TLS_PORT=str(free_port()),
        TWINSTACK_TLS_CERTIFICATE=str(cert),
        TWINSTACK_TLS_CERTIFICATE_KEY=str(key),
        TWINSTACK_TLS_REDIRECT="true" if redirect else "false",
    )


def start(stack: Stack) -> None:
    result = stack.native("up", check=False)
    if result.returncode != 0:
        stack.stop()  # never leave a half-started stack behind
        logs = "\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}" for p in sorted(stack.log_dir.glob("*.log")))
        pytest.fail(f"stack did not start:\n{result.stdout}\n{result.stderr}\n{logs}")


@contextmanager
def running_stack(tmp: Path, **extra: str) -> Iterator[Stack]:
    """A private stack for one test (its own ports and directories), always stopped after."""
    own = make_stack(tmp, **extra)
    start(own)
    try:
        yield own
    finally:
        own.stop()


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory, nginx_bin: str) -> Iterator[Stack]:
    """The suite's stack, HTTPS on beside plain HTTP (tests/integration/test_tls.py)."""
    tmp = tmp_path_factory.mktemp("stack")
    s = make_stack(tmp, **tls_settings(tmp))
    start(s)
    yield s
    s.stop()


@pytest.fixture
def client(stack: Stack) -> Iterator[httpx.Client]:
    with stack.client() as c:
        yield c
