"""Jobs: work that runs after the response is sent (Starlette BackgroundTasks)."""

from __future__ import annotations

from fastapi import APIRouter, BackgroundTasks

from twinstack_contract.errors import ContractError
from twinstack_contract.jobs import run_job
from twinstack_contract.models import ErrorBody, Job, JobRequest

from ..dependencies import JobsDep, JsonBody

router = APIRouter(prefix="/jobs", tags=["jobs"])


@router.post(
    "",
    status_code=202,
    dependencies=[JsonBody],
    responses={400: {"model": ErrorBody}, 415: {"model": ErrorBody}, 422: {"model": ErrorBody}},
)
async def post_job(body: JobRequest, jobs: JobsDep, background: BackgroundTasks) -> Job:
    """Accept a job; it starts once this 202 has been sent. ``run_job`` blocks, so Starlette
    runs it in its thread pool rather than on the loop."""
    job = jobs.accept(body)
    background.add_task(run_job, jobs, job)
    return job


@router.get("/{job_id}", responses={404: {"model": ErrorBody}})
async def get_job(job_id: str, jobs: JobsDep) -> Job:
    try:
        return jobs.get(job_id)
    except KeyError:
        raise ContractError(404, "not_found", "No such job.") from None
