"""Jobs: work handed to the worker's job threads once the response has been sent."""

from __future__ import annotations

from flask import Blueprint, jsonify
from flask.typing import ResponseReturnValue

from twinstack_contract.errors import ContractError
from twinstack_contract.models import JobRequest
from twinstack_runtime.jobs import JobRunner

from ..extensions import db
from ..extensions import jobs as jobs_ext
from ..fastapi_parity import json_body

bp = Blueprint("jobs", __name__, url_prefix="/jobs")


def _runner() -> JobRunner:
    return jobs_ext.runner


@bp.post("")
def post_job() -> ResponseReturnValue:
    """Accept a job (503 at once if the worker's job queue is full). It is queued when the WSGI
    server closes the response, i.e. after the 202 went out."""
    runner = _runner()
    job = db.database.run(runner.accept(json_body(JobRequest)))
    response = jsonify(job.model_dump())
    response.status_code = 202
    response.call_on_close(lambda: runner.start(job))
    return response


@bp.get("/<job_id>")
def get_job(job_id: str) -> dict:
    try:
        return db.database.run(_runner().store.lookup(job_id)).model_dump()
    except KeyError:
        raise ContractError(404, "not_found", "No such job.") from None
