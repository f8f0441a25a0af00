"""Building the shared error body, and classifying bad input the same way in both services."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import BaseModel, ValidationError

from .models import ErrorBody, ErrorDetail, ErrorInfo, IdempotencyKey, OrderRef

JSON_TYPES = ("application/json",)


class ContractError(Exception):
    """An error the contract defines: raised by shared checks, rendered by each framework."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: list[ErrorDetail] | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details or []
        self.headers = headers or {}


def error_body(
    status: int,
    code: str,
    message: str,
    details: Iterable[ErrorDetail] = (),
    request_id: str | None = None,
) -> dict[str, Any]:
    info = ErrorInfo(status=status, code=code, message=message, details=list(details), request_id=request_id)
    return ErrorBody(error=info).model_dump(mode="json")


def invalid_json() -> ContractError:
    """A body that is not JSON at all (bad syntax, bad UTF-8, nesting too deep): 400."""
    return ContractError(400, "invalid_json", "The request body is not valid JSON.")


def validation_details(errors: Iterable[Mapping[str, Any]], location: str | None = None) -> list[ErrorDetail]:
    """Pydantic's error list, reduced to what both frameworks report identically.

    ``input`` and ``ctx`` are dropped: they echo the caller's data back and differ in type
    between a query string (always text) and a JSON body.
    """
    out = []
    for err in errors:
        loc = [str(p) if not isinstance(p, int) else p for p in err["loc"]]
        if location and (not loc or loc[0] != location):
            loc = [location, *loc]
        out.append(ErrorDetail(loc=loc, msg=err["msg"], type=err["type"]))
    return out


def from_validation_errors(errors: Iterable[Mapping[str, Any]], location: str | None = None) -> ContractError:
    """Map pydantic errors to the contract: unparseable JSON is 400, invalid data 422."""
    errors = list(errors)
    if any(e["type"] == "json_invalid" for e in errors):
        return invalid_json()
    return ContractError(422, "validation_error", "The request is not valid.", validation_details(errors, location))


def require_json(content_type: str | None) -> None:
    """Bodies are JSON only; anything else is 415, before any parsing is attempted."""
    media_type = (content_type or "").split(";", 1)[0].strip().lower()
    if media_type not in JSON_TYPES:
        raise ContractError(415, "unsupported_media_type", "Send the body as application/json.")


def _checked(model: type[BaseModel], data: dict[str, Any], loc: list[str | int] | None = None) -> BaseModel:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        details = validation_details(exc.errors(), loc[0] if loc else None)
        if loc:
            details = [d.model_copy(update={"loc": loc}) for d in details]
        raise ContractError(422, "validation_error", "The request is not valid.", details) from None


def idempotency_key(value: str | None) -> str | None:
    """The ``Idempotency-Key`` header, checked the same way by both services: absent is None,
    malformed is 422 (before the body reaches the database)."""
    if value is None:
        return None
    return _checked(IdempotencyKey, {"key": value}, ["header", "Idempotency-Key"]).key


def order_ref(value: str) -> OrderRef:
    """``{order_id}`` in a path: a UUID, or 422 with the path's location."""
    return _checked(OrderRef, {"order_id": value}, ["path", "order_id"])


STATUS_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    406: "not_acceptable",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "too_many_requests",
    500: "internal_error",
    503: "unavailable",
}


def code_for_status(status: int) -> str:
    return STATUS_CODES.get(status, "error" if status >= 500 else "client_error")
