"""Jobs: work handed to a thread pool once the response has been sent."""

from __future__ import annotations

from flask import Blueprint, current_app, jsonify
from flask.typing import ResponseReturnValue

from twinstack_contract.errors import ContractError
from twinstack_contract.jobs import JobStore, run_job
from twinstack_contract.models import JobRequest

from ..validation import json_body

bp = Blueprint("jobs", __name__, url_prefix="/jobs")


def _store() -> JobStore:
    return current_app.extensions["jobs"]


@bp.post("")
def post_job() -> ResponseReturnValue:
    """Accept a job. It is submitted when the WSGI server closes the response, i.e. after the
    202 went out, and runs on the worker's job threads, not on the request path."""
    store = _store()
    job = store.accept(json_body(JobRequest))
    executor = current_app.extensions["job_executor"]
    response = jsonify(job.model_dump())
    response.status_code = 202
    response.call_on_close(lambda: executor.submit(run_job, store, job))
    return response


@bp.get("/<job_id>")
def get_job(job_id: str) -> dict:
    try:
        return _store().get(job_id).model_dump()
    except KeyError:
        raise ContractError(404, "not_found", "No such job.") from None
