"""The jobs table's operations (see twinstack_db/orders.py for how an operation runs): written
once, run by both services through twinstack_runtime.jobs.JobStore."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from sqlalchemy import delete, func, literal, or_, select, update
from sqlalchemy.dialects.postgresql import insert

from twinstack_contract.models import Job

from .models import Job as JobRow
from .orders import Operation, Query

jobs = JobRow.__table__
FIELDS = tuple(Job.model_fields)


def save(job: Job, owner: str) -> Operation:
    """Insert or overwrite the job's record; every save is also a heartbeat."""
    values: dict[str, Any] = {name: getattr(job, name) for name in FIELDS if name != "job_id"}
    statement = insert(jobs).values(id=UUID(job.job_id), owner=owner, heartbeat_at=func.now(), **values)
    statement = statement.on_conflict_do_update(
        index_elements=[jobs.c.id], set_={**values, "owner": owner, "heartbeat_at": func.now()}
    )
    yield Query(statement.returning(jobs.c.id))


def get(job_id: UUID, lease_s: float) -> Operation:
    """The job, its owner, and whether its heartbeat is older than ``lease_s`` (by the
    database's clock: every worker's heartbeat is written with it too)."""
    stale = (func.now() - jobs.c.heartbeat_at) > func.make_interval(0, 0, 0, 0, 0, 0, literal(lease_s))
    row = yield Query(select(jobs, stale.label("stale")).where(jobs.c.id == job_id))
    if row is None:
        return None
    job = Job(job_id=row["id"].hex, **{name: row[name] for name in FIELDS if name != "job_id"})
    return job, row["owner"], row["stale"]


def heartbeat(job_ids: list[UUID]) -> Operation:
    yield Query(update(jobs).where(jobs.c.id.in_(job_ids)).values(heartbeat_at=func.now()).returning(jobs.c.id), "all")


def sweep(retention_s: float, now: float) -> Operation:
    """Delete finished jobs older than the retention, and unfinished ones nobody has
    heartbeated for as long (their worker died long ago). Returns how many went."""
    gone = yield Query(
        delete(jobs)
        .where(
            or_(
                jobs.c.finished_at < now - retention_s,
                jobs.c.heartbeat_at < func.now() - func.make_interval(0, 0, 0, 0, 0, 0, literal(retention_s)),
            )
        )
        .returning(jobs.c.id),
        "all",
    )
    return len(gone)
