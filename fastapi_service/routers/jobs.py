"""Jobs: work that runs after the response is sent, on the worker's own job threads."""

from __future__ import annotations

from fastapi import APIRouter, BackgroundTasks

from twinstack_contract.errors import ContractError
from twinstack_contract.models import ErrorBody, Job, JobRequest

from ..dependencies import DbDep, JobsDep, JsonBody
from ..errors import VALIDATION_ERROR_RESPONSE

router = APIRouter(prefix="/jobs", tags=["jobs"], responses=VALIDATION_ERROR_RESPONSE)


@router.post(
    "",
    status_code=202,
    dependencies=[JsonBody],
    responses={
        400: {"model": ErrorBody},
        415: {"model": ErrorBody},
        422: {"model": ErrorBody},
        503: {"model": ErrorBody, "description": "The worker's job queue is full."},
    },
)
async def post_job(body: JobRequest, jobs: JobsDep, db: DbDep, background: BackgroundTasks) -> Job:
    """Accept a job (503 at once if the worker's job queue is full); it is queued once this
    202 has been sent. Jobs run on threads of their own, never in the thread pool that
    serves FastAPI's plain ``def`` routes."""
    job = await db.run(jobs.accept(body))  # recorded on the worker's async pool
    background.add_task(jobs.start, job)
    return job


@router.get("/{job_id}", responses={404: {"model": ErrorBody}})
async def get_job(job_id: str, jobs: JobsDep, db: DbDep) -> Job:
    try:
        return await db.run(jobs.store.lookup(job_id))
    except KeyError:
        raise ContractError(404, "not_found", "No such job.") from None
