"""Explicit validation with the shared models, raising the same errors FastAPI produces.

FastAPI decodes a JSON body with ``json.loads`` and then validates the Python value; doing the
same here (rather than ``model_validate_json``) makes every error message identical.
"""

from __future__ import annotations

import json
from typing import TypeVar

from flask import request
from pydantic import BaseModel, ValidationError

from twinstack_contract.errors import ContractError, from_validation_errors, require_json

M = TypeVar("M", bound=BaseModel)

INVALID_JSON = ContractError(400, "invalid_json", "The request body is not valid JSON.")


def query(model: type[M]) -> M:
    try:
        return model.model_validate(request.args.to_dict())
    except ValidationError as exc:
        raise from_validation_errors(exc.errors(), "query") from None


def json_body(model: type[M]) -> M:
    require_json(request.content_type)
    raw = request.get_data()
    if not raw:
        # An empty body is a missing body: 422, as FastAPI reports it.
        raise from_validation_errors([{"loc": (), "msg": "Field required", "type": "missing"}], "body")
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):  # bad syntax, bad UTF-8, nesting too deep
        raise INVALID_JSON from None
    try:
        # from_attributes, as FastAPI validates bodies: the same error for a non-object body.
        return model.model_validate(data, from_attributes=True)
    except ValidationError as exc:
        raise from_validation_errors(exc.errors(), "body") from None
