"""Explicit validation with the shared models, raising the same errors FastAPI produces."""

from __future__ import annotations

from typing import TypeVar

from flask import request
from pydantic import BaseModel, ValidationError

from twinstack_contract.errors import from_validation_errors, require_json

M = TypeVar("M", bound=BaseModel)


def query(model: type[M]) -> M:
    try:
        return model.model_validate(request.args.to_dict())
    except ValidationError as exc:
        raise from_validation_errors(exc.errors(), "query") from None


def json_body(model: type[M]) -> M:
    require_json(request.content_type)
    try:
        return model.model_validate_json(request.get_data())
    except ValidationError as exc:
        raise from_validation_errors(exc.errors(), "body") from None
