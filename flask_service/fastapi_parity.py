"""Where the Flask service imitates FastAPI, so both answer alike: query and body validation
with the shared models, raising the errors FastAPI produces.

Flask's own path would be ``request.get_json()`` and ``request.args.to_dict()``; here, as
FastAPI does, a JSON body is decoded with ``json.loads`` and then the Python value validated
(rather than ``model_validate_json``), so every error message is identical, and a repeated
query parameter counts by its last value. The FastAPI service's imitations of Flask are in
fastapi_service/flask_parity.py.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TypeVar

from flask import request
from pydantic import BaseModel, ValidationError
from werkzeug.exceptions import RequestEntityTooLarge

from twinstack_contract.errors import (
    ContractError,
    from_validation_errors,
    invalid_json,
    require_json,
    validation_details,
)

M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")


def query(model: type[M]) -> M:
    try:
        # A repeated parameter counts by its last value, as Starlette's QueryParams (and so
        # FastAPI) takes it; werkzeug's to_dict() would take the first.
        return model.model_validate({key: values[-1] for key, values in request.args.lists()})
    except ValidationError as exc:
        raise from_validation_errors(exc.errors(), "query") from None


def _body() -> bytes:
    """The request body; 413 if it is longer than MAX_CONTENT_LENGTH.

    werkzeug refuses a declared Content-Length over the limit before reading, but a chunked
    body (gunicorn passes it with wsgi.input_terminated) it cuts at the limit and returns the
    first 64 KiB as if that were all of it: a longer body whose first 64 KiB parse would be
    accepted. One more byte from the server's own stream tells a body of exactly the limit
    from a longer one.
    """
    raw = request.get_data()
    limit = request.max_content_length
    cut_at_limit = request.content_length is None and limit is not None and len(raw) >= limit
    if cut_at_limit and request.environ["wsgi.input"].read(1):
        raise RequestEntityTooLarge()
    return raw


def json_body(model: type[M]) -> M:
    return json_body_and_header(model, lambda: None)[0]


def json_body_and_header(model: type[M], header: Callable[[], T]) -> tuple[M, T]:
    """The body, and a header checked by ``header`` (which raises a 422 ContractError), in
    FastAPI's order: 415, then 400 for a body that is not JSON, then one 422 that lists the
    header's errors before the body's."""
    require_json(request.content_type)
    raw = _body()
    data = None
    if raw:
        try:
            data = json.loads(raw)
        except (ValueError, RecursionError):  # bad syntax, bad UTF-8, nesting too deep
            raise invalid_json() from None
    details = []
    value = None
    try:
        value = header()
    except ContractError as exc:
        details += exc.details
    body = None
    if not raw:
        # An empty body is a missing body: 422, as FastAPI reports it.
        details += validation_details([{"loc": (), "msg": "Field required", "type": "missing"}], "body")
    else:
        try:
            # from_attributes, as FastAPI validates bodies: the same error for a non-object body.
            body = model.model_validate(data, from_attributes=True)
        except ValidationError as exc:
            details += from_validation_errors(exc.errors(), "body").details
    if details:
        raise ContractError(422, "validation_error", "The request is not valid.", details)
    return body, value
