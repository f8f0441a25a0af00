"""Every error leaves the FastAPI service in the contract's shape (twinstack_contract.errors)."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from twinstack_contract.errors import ContractError, code_for_status, error_body, from_validation_errors
from twinstack_contract.models import ErrorBody

log = logging.getLogger(__name__)

# What a router with parameters declares for its 422: the contract's error body, which
# validation_error below sends. Without it FastAPI documents its own HTTPValidationError
# ({"detail": [...]}), a body neither service ever sends.
VALIDATION_ERROR_RESPONSE = {422: {"model": ErrorBody, "description": "Invalid parameters."}}

# The detail fastapi.routing uses for a body it could not decode.
BODY_PARSE_ERROR = "There was an error parsing the body"


def _respond(request: Request, exc: ContractError, headers: dict[str, str] | None = None) -> JSONResponse:
    rid = getattr(request.state, "request_id", None) or None  # "" when request ids are off
    body = error_body(exc.status, exc.code, exc.message, exc.details, rid)
    return JSONResponse(body, status_code=exc.status, headers=headers)


async def contract_error(request: Request, exc: ContractError) -> JSONResponse:
    return _respond(request, exc)


async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    return _respond(request, from_validation_errors(exc.errors()))


async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
    if exc.status_code == 400 and exc.detail == BODY_PARSE_ERROR:
        # FastAPI raises this before any dependency runs when a JSON body cannot even be
        # decoded (invalid UTF-8): the contract calls that invalid JSON, as Flask does.
        return _respond(request, ContractError(400, "invalid_json", "The request body is not valid JSON."))
    message = exc.detail if isinstance(exc.detail, str) else "Request failed."
    headers = exc.headers
    if exc.status_code == 405 and headers and "Allow" in headers:
        # HEAD is served wherever GET is (middleware.HeadMiddleware), so a 405 says so, as
        # werkzeug's does on the Flask side.
        allowed = {m.strip() for m in headers["Allow"].split(",") if m.strip()}
        if "GET" in allowed:
            headers = {**headers, "Allow": ", ".join(sorted(allowed | {"HEAD"}))}
    return _respond(request, ContractError(exc.status_code, code_for_status(exc.status_code), message), headers)


async def unhandled_error(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s", request.url.path)
    return _respond(request, ContractError(500, "internal_error", "Internal server error."))


def install(app: FastAPI) -> None:
    app.add_exception_handler(ContractError, contract_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(Exception, unhandled_error)
