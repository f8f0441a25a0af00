"""Background jobs: a bounded queue of their own, recorded as files any worker can read.

A job is accepted (202) before it runs and starts once the response has been sent. Three
guarantees hold whatever the load or the worker's fate:

- Jobs never share the server's own thread pool (FastAPI's runs every plain ``def`` route):
  they run on a few threads of their own, and at most ``capacity`` wait or run per worker.
  A full queue refuses at once with 503 JSON; nothing waits for a slot.
- Stopping a worker never blocks: jobs that have not started are marked ``failed`` at once,
  running ones get ``grace_s``, then are marked ``failed`` too. The threads are daemons, so
  the process exits on time and its siblings keep answering health checks.
- A job whose worker died (SIGKILL, OOM) is reported ``failed``, never ``queued``/``running``
  forever: each record names its owner process, and a reader checks that owner is alive.

Records older than ``retention_s`` are deleted, so the directory (a tmpfs in Compose) stays
bounded.
"""

from __future__ import annotations

import json
import os
import queue
import re
import tempfile
import threading
import time
import uuid
from pathlib import Path

from twinstack_contract.errors import ContractError
from twinstack_contract.models import Job, JobRequest

from .work import cpu_work, worker_id

JOB_ID_RE = re.compile(r"^[0-9a-f]{32}$")
UNFINISHED = ("queued", "running")
SWEEP_EVERY_S = 60.0


def _process_start(pid: int) -> str | None:
    """The kernel's start time of ``pid`` (clock ticks since boot), or None if it is gone.
    pid plus start time names one process even after the pid is reused."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def _owner() -> str:
    pid = os.getpid()
    return f"{pid}:{_process_start(pid)}"


def _owner_alive(owner: str) -> bool:
    pid, _, started = owner.partition(":")
    return _process_start(int(pid)) == started


class JobStore:
    """One JSON file per job. Written by its owner worker, read by any worker of the service."""

    def __init__(self, directory: Path, retention_s: float = 900.0):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.retention_s = retention_s
        self._next_sweep = 0.0

    def _path(self, job_id: str) -> Path:
        if not JOB_ID_RE.match(job_id):
            raise KeyError(job_id)
        return self.directory / f"{job_id}.json"

    def save(self, job: Job) -> None:
        # Write then rename: a reader in another worker never sees half a file.
        fd, tmp = tempfile.mkstemp(dir=self.directory, suffix=".tmp")
        with os.fdopen(fd, "w") as fh:
            json.dump({"owner": _owner(), "job": job.model_dump(mode="json")}, fh)
        os.replace(tmp, self._path(job.job_id))

    def get(self, job_id: str) -> Job:
        try:
            record = json.loads(self._path(job_id).read_text())
        except FileNotFoundError:
            raise KeyError(job_id) from None
        job = Job.model_validate(record["job"])
        if job.status in UNFINISHED and not _owner_alive(record["owner"]):
            return failed(job, "lost: the worker that held this job stopped before it finished")
        return job

    def accept(self, request: JobRequest) -> Job:
        self.sweep()
        job = Job(
            job_id=uuid.uuid4().hex,
            status="queued",
            delay_ms=request.delay_ms,
            work=request.work,
            accepted_at=time.time(),
            served_by=worker_id(),
        )
        try:
            self.save(job)
        except OSError as exc:  # the directory is full (a size-limited tmpfs) or gone
            raise ContractError(503, "jobs_unavailable", "Jobs cannot be recorded right now.") from exc
        return job

    def sweep(self) -> int:
        """Delete records older than the retention, at most once a minute; returns how many."""
        now = time.time()
        if now < self._next_sweep:
            return 0
        self._next_sweep = now + SWEEP_EVERY_S
        removed = 0
        for path in self.directory.iterdir():
            try:
                if now - path.stat().st_mtime > self.retention_s:
                    path.unlink()
                    removed += 1
            except FileNotFoundError:  # another worker swept it first
                pass
        return removed


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
        self._lock = threading.Lock()
        self._stopping = False
        self._threads = [threading.Thread(target=self._work, name=f"job-{i}", daemon=True) for i in range(threads)]
        for thread in self._threads:
            thread.start()

    def accept(self, request: JobRequest) -> Job:
        """Record a job if a slot is free (503 JSON at once if not); ``start`` runs it later."""
        if self._stopping or not self._slots.acquire(blocking=False):
            raise ContractError(503, "jobs_busy", "Too many jobs are waiting; try again later.")
        try:
            return self.store.accept(request)
        except BaseException:
            self._slots.release()
            raise

    def start(self, job: Job) -> None:
        """Queue an accepted job; called once its 202 has been sent. Never blocks."""
        self._queue.put(job)

    def _work(self) -> None:
        while (job := self._queue.get()) is not None:
            try:
                if self._stopping:
                    self.store.save(failed(job, "cancelled: the worker stopped before the job started"))
                    continue
                with self._lock:
                    self._running[job.job_id] = job
                run_job(self.store, job)
            except Exception:  # recorded as failed by run_job; the thread carries on
                pass
            finally:
                with self._lock:
                    self._running.pop(job.job_id, None)
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
                self.store.save(failed(job, "cancelled: the worker stopped before the job started"))
        with self._lock:
            for job in self._running.values():
                self.store.save(failed(job, "interrupted: the worker stopped while the job ran"))
