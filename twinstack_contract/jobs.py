"""Background jobs, recorded as files so any worker of a service can report on any job.

A job is accepted (202) before it runs; ``run_job`` is what each framework schedules after
the response is sent (FastAPI's BackgroundTasks, Flask's thread pool).
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import time
import uuid
from pathlib import Path

from .models import Job, JobRequest
from .work import cpu_work, worker_id

JOB_ID_RE = re.compile(r"^[0-9a-f]{32}$")


class JobStore:
    def __init__(self, directory: Path):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)

    def _path(self, job_id: str) -> Path:
        if not JOB_ID_RE.match(job_id):
            raise KeyError(job_id)
        return self.directory / f"{job_id}.json"

    def save(self, job: Job) -> None:
        # Write then rename: a reader in another worker never sees half a file.
        fd, tmp = tempfile.mkstemp(dir=self.directory, suffix=".tmp")
        with os.fdopen(fd, "w") as fh:
            fh.write(job.model_dump_json())
        os.replace(tmp, self._path(job.job_id))

    def get(self, job_id: str) -> Job:
        try:
            return Job.model_validate(json.loads(self._path(job_id).read_text()))
        except FileNotFoundError:
            raise KeyError(job_id) from None

    def accept(self, request: JobRequest) -> Job:
        job = Job(
            job_id=uuid.uuid4().hex,
            status="queued",
            delay_ms=request.delay_ms,
            work=request.work,
            accepted_at=time.time(),
            served_by=worker_id(),
        )
        self.save(job)
        return job


def run_job(store: JobStore, job: Job) -> None:
    """The work itself: a wait, then hashing. Blocking on purpose; runs off the request path."""
    job = job.model_copy(update={"status": "running", "started_at": time.time()})
    store.save(job)
    try:
        time.sleep(job.delay_ms / 1000)
        if job.work:
            cpu_work(job.work)
    except Exception:
        store.save(job.model_copy(update={"status": "failed", "finished_at": time.time()}))
        raise
    store.save(job.model_copy(update={"status": "done", "finished_at": time.time()}))
