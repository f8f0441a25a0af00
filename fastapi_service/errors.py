"""Every error leaves the FastAPI service in the contract's shape (twinstack_contract.errors)."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from twinstack_contract.errors import ContractError, code_for_status, error_body, from_validation_errors
from twinstack_contract.models import ErrorBody

from . import flask_parity

log = logging.getLogger(__name__)

# What a router with parameters declares for its 422: the contract's error body, which
# validation_error below sends. Without it FastAPI documents its own HTTPValidationError
# ({"detail": [...]}), a body neither service ever sends.
VALIDATION_ERROR_RESPONSE = {422: {"model": ErrorBody, "description": "Invalid parameters."}}
# What every route that uses the database may answer besides its own (twinstack_db/session.py).
DATABASE_ERROR_RESPONSES = {
    503: {"model": ErrorBody, "description": "pool_exhausted or database_unavailable, with Retry-After."}
}


def _respond(request: Request, exc: ContractError, headers: dict[str, str] | None = None) -> JSONResponse:
    rid = getattr(request.state, "request_id", None) or None  # "" when request ids are off
    body = error_body(exc.status, exc.code, exc.message, exc.details, rid)
    return JSONResponse(body, status_code=exc.status, headers={**exc.headers, **(headers or {})})


async def contract_error(request: Request, exc: ContractError) -> JSONResponse:
    return _respond(request, exc)


async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    return _respond(request, from_validation_errors(exc.errors()))


async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
    if (imitated := flask_parity.as_flask_error(exc)) is not None:
        return _respond(request, imitated)
    message = exc.detail if isinstance(exc.detail, str) else "Request failed."
    headers = flask_parity.allow_with_head(exc.status_code, exc.headers, request.scope)
    return _respond(request, ContractError(exc.status_code, code_for_status(exc.status_code), message), headers)


async def unhandled_error(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s", request.url.path)
    return _respond(request, ContractError(500, "internal_error", "Internal server error."))


def install(app: FastAPI) -> None:
    app.add_exception_handler(ContractError, contract_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(Exception, unhandled_error)
