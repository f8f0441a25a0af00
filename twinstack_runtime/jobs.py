"""Background jobs: a bounded queue of their own, recorded in the database's jobs table, so
any worker of either service, on any machine, answers GET /jobs/{id}.

A job is accepted (202) before it runs and starts once the response has been sent. Three
guarantees hold whatever the load or the worker's fate:

- Jobs never share the server's own thread pool (FastAPI's runs every plain ``def`` route):
  they run on a few threads of their own, and at most ``capacity`` wait or run per worker.
  A full queue refuses at once with 503 JSON; nothing waits for a slot.
- Stopping a worker never blocks: jobs that have not started are marked ``failed`` at once,
  running ones get ``grace_s``, then are marked ``failed`` too. The threads are daemons, so
  the process exits on time and its siblings keep answering health checks.
- A job whose worker died (SIGKILL, OOM, a machine gone) is reported ``failed``, never
  ``queued``/``running`` forever: each record names its owner (host, pid and the process's
  start time), which a reader on the same host checks at once, and the owner heartbeats its
  jobs every HEARTBEAT_S; a record whose heartbeat is older than LEASE_S is lost, wherever its
  worker ran.

Finished records older than ``retention_s`` (TWINSTACK_JOB_RETENTION_S, 15 minutes by default)
are deleted, and so are unfinished ones nobody heartbeated for as long: the table stays bounded.
"""

from __future__ import annotations

import contextlib
import functools
import os
import queue
import re
import socket
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any
from uuid import UUID

from twinstack_contract.errors import ContractError
from twinstack_contract.models import Job, JobRequest
from twinstack_db import jobs as table
from twinstack_db.operation import Operation

from .work import cpu_work, worker_id

JOB_ID_RE = re.compile(r"^[0-9a-f]{32}$")
UNFINISHED = ("queued", "running")
SWEEP_EVERY_S = 60.0
HEARTBEAT_S = 5.0
# Four missed heartbeats: a worker busy with a long GC pause or a slow database is not "lost".
LEASE_S = 20.0
HOST = socket.gethostname()
# Runs one database operation to its end, from any thread (twinstack_db.session).
Run = Callable[[Operation], Any]


def _process_start(pid: int) -> str | None:
    """The kernel's start time of ``pid`` (clock ticks since boot), or None if it is gone.
    pid plus start time names one process even after the pid is reused."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def _owner() -> str:
    return _owner_of(os.getpid())


@functools.cache
def _owner_of(pid: int) -> str:
    """Read from /proc once per process (every save of a job names its owner)."""
    return f"{HOST}:{pid}:{_process_start(pid)}"


def _owner_gone(owner: str) -> bool:
    """True when the owner ran on this host and has stopped; another host's is the lease's."""
    host, pid, started = owner.split(":")  # a host name has no ":"
    return host == HOST and _process_start(int(pid)) != started


class JobStore:
    """The jobs table. What a request asks of it (``lookup``, ``record``) is an operation, which
    each service runs on its own database: awaited on FastAPI's event loop, called on a Flask
    worker. The job threads run theirs through ``run``, a blocking call."""

    def __init__(self, run: Run, retention_s: float = 900.0):
        self.run = run
        self.retention_s = retention_s
        self._next_sweep = 0.0

    def save(self, job: Job) -> None:
        self.run(table.save(job, _owner()))

    def lookup(self, job_id: str) -> Operation:
        """The job as GET /jobs/{id} reports it; KeyError (before any query) when there is none."""
        if not JOB_ID_RE.match(job_id):
            raise KeyError(job_id)
        found = yield from table.get(UUID(job_id), LEASE_S)
        if found is None:
            raise KeyError(job_id)
        job, owner, stale = found
        if job.status in UNFINISHED and (stale or _owner_gone(owner)):
            return failed(job, "lost: the worker that held this job stopped before it finished")
        return job

    def record(self, request: JobRequest) -> Operation:
        """A new job, queued and saved (503 database_unavailable when it cannot be); it also
        sweeps the table when a sweep is due."""
        yield from self.sweep()
        job = Job(
            job_id=uuid.uuid4().hex,
            status="queued",
            delay_ms=request.delay_ms,
            work=request.work,
            accepted_at=time.time(),
            served_by=worker_id(),
        )
        yield from table.save(job, _owner())
        return job

    def heartbeat(self, job_ids: list[str]) -> None:
        if job_ids:
            self.run(table.heartbeat([UUID(job_id) for job_id in job_ids]))

    def sweep(self) -> Operation:
        """Delete records past the retention, at most once a minute per worker; returns how many."""
        now = time.time()
        if now < self._next_sweep:
            return 0
        self._next_sweep = now + SWEEP_EVERY_S
        return (yield from table.sweep(self.retention_s, now))


def failed(job: Job, reason: str) -> Job:
    return job.model_copy(update={"status": "failed", "finished_at": job.finished_at or time.time(), "error": reason})


def run_job(store: JobStore, job: Job) -> None:
    """The work itself: a wait, then hashing. Blocking on purpose; runs off the request path."""
    job = job.model_copy(update={"status": "running", "started_at": time.time()})
    store.save(job)
    try:
        time.sleep(job.delay_ms / 1000)
        if job.work:
            cpu_work(job.work)
    except Exception as exc:
        store.save(failed(job, f"error: {type(exc).__name__}"))
        raise
    store.save(job.model_copy(update={"status": "done", "finished_at": time.time()}))


class JobRunner:
    """A worker's job threads and its bounded queue (see the module docstring)."""

    def __init__(self, store: JobStore, threads: int, capacity: int) -> None:
        self.store = store
        self._slots = threading.BoundedSemaphore(capacity)
        self._queue: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self._running: dict[str, Job] = {}
        self._held: set[str] = set()  # accepted here and not finished: heartbeated
        self._lock = threading.Lock()
        self._stopping = False
        self._stopped = threading.Event()
        self._threads = [threading.Thread(target=self._work, name=f"job-{i}", daemon=True) for i in range(threads)]
        for thread in self._threads:
            thread.start()
        threading.Thread(target=self._heartbeat, name="job-heartbeat", daemon=True).start()

    def accept(self, request: JobRequest) -> Operation:
        """An operation that records a job if a slot is free (503 JSON at once, before any
        query, if not); the service runs it on its database, and ``start`` runs the job later."""
        if self._stopping or not self._slots.acquire(blocking=False):
            raise ContractError(503, "jobs_busy", "Too many jobs are waiting; try again later.")
        try:
            job = yield from self.store.record(request)
        except BaseException:  # the save failed, or the operation was closed before it ended
            self._slots.release()
            raise
        with self._lock:
            self._held.add(job.job_id)
        return job

    def _heartbeat(self) -> None:
        """Every HEARTBEAT_S: this worker still holds its queued and running jobs."""
        while not self._stopped.wait(HEARTBEAT_S) and not self._stopping:
            with self._lock:
                held = list(self._held)
            # The database is away: a missed beat; the lease allows four.
            with contextlib.suppress(Exception):
                self.store.heartbeat(held)

    def _record(self, job: Job) -> None:
        """Save a final state; a database that is away leaves it to the lease (never raises)."""
        with contextlib.suppress(Exception):
            self.store.save(job)

    def start(self, job: Job) -> None:
        """Queue an accepted job; called once its 202 has been sent. Never blocks."""
        self._queue.put(job)

    def _work(self) -> None:
        while (job := self._queue.get()) is not None:
            try:
                if self._stopping:
                    self._record(failed(job, "cancelled: the worker stopped before the job started"))
                    continue
                with self._lock:
                    self._running[job.job_id] = job
                run_job(self.store, job)
            except Exception:  # recorded as failed by run_job; the thread carries on
                pass
            finally:
                with self._lock:
                    self._running.pop(job.job_id, None)
                    self._held.discard(job.job_id)
                self._slots.release()

    def stop(self, grace_s: float) -> None:
        """Refuse new jobs, fail the queued ones, give running ones ``grace_s``, then fail them."""
        self._stopping = True
        for _ in self._threads:
            self._queue.put(None)
        deadline = time.monotonic() + grace_s
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        # Anything still queued after the sentinels (a thread was busy) or still running.
        while True:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                break
            if job is not None:
                self._record(failed(job, "cancelled: the worker stopped before the job started"))
        with self._lock:
            running = list(self._running.values())
            self._held.clear()
        for job in running:
            self._record(failed(job, "interrupted: the worker stopped while the job ran"))
        self._stopped.set()
