"""What the two services may answer differently, and nothing else: used by the contract tests
(both apps in process) and the fuzz through nginx (tests/integration/both_halves/test_fuzz_contract.py)."""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from typing import Any

import pytest
from pydantic import BaseModel

from twinstack_contract.models import (
    CpuResult,
    ErrorBody,
    FanoutResult,
    Health,
    Inspection,
    IoResult,
    Job,
    OrderPage,
    StoredOrder,
    StreamChunk,
)

SIDES = ("fastapi", "flask")

ANY = object()
# Per response model: the paths (tuples of keys) of the values that may differ between the two
# services, with either ANY or the value each side must have (fastapi's, flask's). Each path
# must exist in both answers, so a renamed field fails here instead of being compared by luck.
VOLATILE: dict[type[BaseModel], dict[tuple[str, ...], Any]] = {
    Health: {("service",): SIDES, ("served_by",): ANY},
    IoResult: {("waited_ms",): ANY, ("served_by",): ANY},
    CpuResult: {("cpu_ms",): ANY, ("served_by",): ANY},
    FanoutResult: {("elapsed_ms",): ANY, ("mode",): ("concurrent", "sequential"), ("served_by",): ANY},
    StreamChunk: {("elapsed_ms",): ANY, ("served_by",): ANY},
    StoredOrder: {("order_id",): ANY, ("created_at",): ANY, ("served_by",): ANY},
    # Both services read the one database: the same page, order for order.
    OrderPage: {},
    Job: {("job_id",): ANY, ("accepted_at",): ANY, ("served_by",): ANY},
    # host and url: each test client names the server differently ("testserver", "localhost").
    Inspection: {("framework",): SIDES, ("host",): ANY, ("url",): ANY, ("served_by",): ANY},
    # The request id in an error is the one sent: equal on both sides, nothing masked.
    ErrorBody: {},
}
# The model of a successful answer, by path (an error is always ErrorBody); a path with more
# segments (/orders/{id}, /jobs/{id}) by its first segment.
MODELS: dict[str, type[BaseModel]] = {
    "/health": Health,
    "/ready": Health,
    "/io": IoResult,
    "/db": IoResult,
    "/cpu": CpuResult,
    "/fanout": FanoutResult,
    "/stream": StreamChunk,  # one per NDJSON line
    "/orders": StoredOrder,
    "/jobs": Job,
    "/inspect": Inspection,
}
# Where one path answers another model by method: GET /orders is a page of them.
BY_METHOD: dict[tuple[str, str], type[BaseModel]] = {("GET", "/orders"): OrderPage}


@dataclass
class Answer:
    status: int
    headers: dict[str, str]  # lower-case names
    body: Any

    @property
    def media_type(self) -> str:
        return self.headers.get("content-type", "").split(";")[0]


def parse(raw: bytes, media_type: str) -> Any:
    try:
        if media_type == "application/x-ndjson":
            return [json.loads(line) for line in raw.splitlines()]
        if media_type == "text/plain":  # /metrics: Prometheus' text format
            return raw.decode()
        return json.loads(raw) if raw else None
    except ValueError:
        pytest.fail(f"the body is not {media_type}: {raw[:200]!r}")


def model_for(path: str, status: int, method: str = "GET") -> type[BaseModel]:
    if status >= 400:
        return ErrorBody
    route = path.split("?")[0]
    return BY_METHOD.get((method, route)) or MODELS["/" + route.split("/")[1]]


def masked(body: Any, model: type[BaseModel], side: str, paths: dict[tuple[str, ...], Any] | None = None) -> Any:
    """``body`` checked against ``model`` exactly, with the volatile paths replaced by a marker."""
    if isinstance(body, list):  # NDJSON: one model per line
        return [masked(line, model, side, paths) for line in body]
    # Exactly the model: no key missing, none extra, every value of its type.
    assert model.model_validate(body).model_dump(mode="json") == body, (side, model.__name__, body)
    out = copy.deepcopy(body)
    for path, expected in (VOLATILE[model] if paths is None else paths).items():
        parent = out
        for key in path[:-1]:
            parent = parent[key]
        assert path[-1] in parent, f"{model.__name__} has no {path}: update VOLATILE"
        if expected is not ANY:
            assert parent[path[-1]] == expected[SIDES.index(side)], (side, path)
        parent[path[-1]] = "<masked>"
    return out
