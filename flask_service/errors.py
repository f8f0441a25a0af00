"""Every error leaves the Flask service in the contract's shape (twinstack_contract.errors)."""

from __future__ import annotations

from flask import Flask, jsonify, request
from flask.typing import ResponseReturnValue
from werkzeug.exceptions import HTTPException

from twinstack_contract.errors import ContractError, code_for_status, error_body


def _respond(exc: ContractError) -> ResponseReturnValue:
    rid = request.environ.get("twinstack.request_id") or None  # "" when request ids are off
    return jsonify(error_body(exc.status, exc.code, exc.message, exc.details, rid)), exc.status, exc.headers


def install(app: Flask) -> None:
    @app.errorhandler(ContractError)
    def contract_error(exc: ContractError) -> ResponseReturnValue:
        return _respond(exc)

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> ResponseReturnValue:
        status = exc.code or 500
        # exc.name is the reason phrase ("Not Found"), the same text Starlette uses.
        body, _, _ = _respond(ContractError(status, code_for_status(status), exc.name))
        # Keep the headers werkzeug's exception carries (Allow on a 405).
        allow = exc.get_response().headers.get("Allow")
        return body, status, {"Allow": allow} if allow else {}

    @app.errorhandler(Exception)
    def unhandled_error(exc: Exception) -> ResponseReturnValue:
        app.logger.exception("unhandled error on %s", request.path)
        return _respond(ContractError(500, "internal_error", "Internal server error."))
