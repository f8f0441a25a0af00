"""The jobs table's operations (see twinstack_db/operation.py for how an operation runs): written
once, run by both services through twinstack_runtime.jobs.JobStore."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from sqlalchemy import Double, bindparam, delete, func, literal_column, or_, select, update
from sqlalchemy.dialects.postgresql import insert

from twinstack_contract.models import Job

from .models import Job as JobRow
from .operation import Operation, Query, Statement

jobs = JobRow.__table__
FIELDS = tuple(Job.model_fields)
_STORED = tuple(name for name in FIELDS if name != "job_id")


def _seconds(name: str):
    return literal_column("interval '1 second'") * bindparam(name, type_=Double)


# Insert or overwrite the job's record; every save is also a heartbeat.
_values = {name: bindparam(name) for name in _STORED}
SAVE = Statement.of(
    insert(jobs)
    .values(id=bindparam("id"), owner=bindparam("owner"), heartbeat_at=func.now(), **_values)
    .on_conflict_do_update(
        index_elements=[jobs.c.id], set_={**_values, "owner": bindparam("owner"), "heartbeat_at": func.now()}
    )
    .returning(jobs.c.id)
)
# The job, and whether its heartbeat is older than the lease (by the database's clock: every
# worker's heartbeat is written with it too).
GET = Statement.of(
    select(jobs, ((func.now() - jobs.c.heartbeat_at) > _seconds("lease_s")).label("stale")).where(
        jobs.c.id == bindparam("id")
    )
)
HEARTBEAT = Statement.of(
    update(jobs).where(jobs.c.id == func.any(bindparam("ids"))).values(heartbeat_at=func.now()).returning(jobs.c.id)
)
# Finished jobs older than the retention, and unfinished ones nobody has heartbeated for as
# long (their worker died long ago).
SWEEP = Statement.of(
    delete(jobs)
    .where(
        or_(
            jobs.c.finished_at < bindparam("finished_before"),
            jobs.c.heartbeat_at < func.now() - _seconds("retention_s"),
        )
    )
    .returning(jobs.c.id)
)


def save(job: Job, owner: str) -> Operation:
    values: dict[str, Any] = {name: getattr(job, name) for name in _STORED}
    yield Query(SAVE, {**values, "id": UUID(job.job_id), "owner": owner})


def get(job_id: UUID, lease_s: float) -> Operation:
    """The job, its owner, and whether its heartbeat is older than ``lease_s``."""
    row = yield Query(GET, {"id": job_id, "lease_s": lease_s})
    if row is None:
        return None
    job = Job(job_id=row["id"].hex, **{name: row[name] for name in _STORED})
    return job, row["owner"], row["stale"]


def heartbeat(job_ids: list[UUID]) -> Operation:
    yield Query(HEARTBEAT, {"ids": job_ids}, "all")


def sweep(retention_s: float, now: float) -> Operation:
    """Delete what the retention lets go; returns how many went."""
    gone = yield Query(SWEEP, {"finished_before": now - retention_s, "retention_s": retention_s}, "all")
    return len(gone)
