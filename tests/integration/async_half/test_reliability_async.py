"""A POST caught on an async worker that dies, through nginx."""

from __future__ import annotations

import json
import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.integration import logs
from tests.integration.conftest import running_stack
from tests.integration.test_reliability import job_rows, queued_bytes, workers_of

pytestmark = pytest.mark.integration


def stopped(pid: int) -> bool:
    """Whether the process is stopped by a signal (state T in /proc/PID/stat)."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "T"


def test_a_post_in_flight_on_a_killed_worker_is_a_clean_502_never_a_duplicate(tmp_path, nginx_bin):
    """A POST delivered to a worker that dies before answering: nginx answers 502 JSON after
    one upstream attempt, and no job row exists. Made deterministic: one async worker; one client
    connection, so one nginx worker, which keeps the upstream connection of a first GET alive;
    the worker stopped (SIGSTOP: its loop runs nothing); the POST then sits in that kept-alive
    connection's receive queue (seen with ss) when the worker is killed."""
    with running_stack(tmp_path, TWINSTACK_ASYNC_WORKERS="1") as own:
        url = json.loads(own.native("env").stdout)["TWINSTACK_DATABASE_URL"]
        port = own.env["TWINSTACK_ASYNC_PORT"]
        limits = httpx.Limits(max_connections=1)
        with httpx.Client(base_url=own.base_url, timeout=30, limits=limits) as client, ThreadPoolExecutor(1) as pool:
            assert client.get("/async/io?delay_ms=0").status_code == 200  # nginx keeps this upstream connection
            worker = workers_of(own.master_pid("fastapi"))[0]
            os.kill(worker, signal.SIGSTOP)
            deadline = time.monotonic() + 5
            while not stopped(worker):  # the kernel has stopped it
                assert time.monotonic() < deadline, "the worker did not stop"
                time.sleep(0.01)
            assert queued_bytes(port, worker) == 0
            post = pool.submit(client.post, "/async/jobs", json={"delay_ms": 0})
            while queued_bytes(port, worker) == 0:  # the POST waits, unread, in the worker's socket
                assert time.monotonic() < deadline, "the POST never reached the worker"
                time.sleep(0.02)
            os.kill(worker, signal.SIGKILL)
            response = post.result()
        assert response.status_code == 502 and response.json()["error"]["code"] == "bad_gateway", response.text
        (edge,) = logs.by_request_id(own.log_dir, "nginx", [response.headers["x-request-id"]]).values()
        assert edge["upstream_addr"] == f"127.0.0.1:{port}"  # one attempt: never sent again
        assert job_rows(url) == 0  # not processed, not half-done
        # The replacement worker serves the next POST exactly once.
        with httpx.Client(base_url=own.base_url, timeout=30) as client:
            assert client.post("/async/jobs", json={"delay_ms": 0}).status_code == 202
        assert job_rows(url) == 1
