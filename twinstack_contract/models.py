"""One Pydantic model per payload, used by both services.

FastAPI binds them as query/body models; Flask validates with them explicitly. The limits
here are the contract: they bound every request's cost so a caller cannot ask for an
hour-long sleep or a gigabyte of hashing.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

MAX_DELAY_MS = 30_000
MAX_WORK = 2_000_000
MAX_FANOUT_CALLS = 50
MAX_CHUNKS = 100
# Upper bound on how long any one request may run. nginx's proxy_read_timeout and
# gunicorn's timeout are set above it (see nginx/snippets/proxy.conf, gunicorn.conf.py).
MAX_REQUEST_MS = 30_000


def _integral_number(value: Any) -> Any:
    # JSON has one number type: 2.0 is the integer 2 (JSON Schema's "integer" says so too, and
    # a JavaScript client may send it either way). Only that is let through; strict validation
    # still refuses true, "2" and 2.5.
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


# An integer in a strict JSON body, as the published schema types it: a whole number, written
# 2 or 2.0; never a bool, a string or a fraction.
JsonInt = Annotated[int, BeforeValidator(_integral_number)]


# One character of an e-mail address: not "@", not a control character, not white space.
# Spelled out rather than [^@\s]: "\s" differs between the schema's regex dialect (ECMA-262,
# what clients validate with) and the services' (Rust's and Python's), e.g. on U+0085 and
# U+FEFF, and the same pattern must accept the same strings everywhere.
_EMAIL_PART = r"[^@\x00-\x20\x7f-\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff]"


class IoParams(BaseModel):
    """``GET /io``: wait this long without using CPU."""

    delay_ms: int = Field(100, ge=0, le=MAX_DELAY_MS, description="How long to wait, in ms.")


class CpuParams(BaseModel):
    """``GET /cpu``: hash this many rounds (about 1 µs a round)."""

    work: int = Field(10_000, ge=1, le=MAX_WORK, description="SHA-256 rounds to run.")


class FanoutParams(BaseModel):
    """``GET /fanout``: make ``calls`` downstream requests that each wait ``delay_ms``."""

    # The cross-field bound is stated where the schema can say it, in each description: an
    # OpenAPI schema types each query parameter on its own and has no way to bound a product.
    calls: int = Field(
        5, ge=1, le=MAX_FANOUT_CALLS, description=f"Downstream calls; calls x delay_ms is at most {MAX_REQUEST_MS}."
    )
    delay_ms: int = Field(
        100,
        ge=0,
        le=MAX_DELAY_MS,
        description=f"Each call's wait, in ms; calls x delay_ms is at most {MAX_REQUEST_MS}.",
    )

    @model_validator(mode="after")
    def _bounded(self) -> FanoutParams:
        # Sequential calls (the sync service) take calls x delay_ms: keep that under the cap.
        if self.calls * self.delay_ms > MAX_REQUEST_MS:
            raise ValueError(f"calls x delay_ms must be at most {MAX_REQUEST_MS} ms")
        return self


class StreamParams(BaseModel):
    """``GET /stream``: send ``chunks`` NDJSON lines, ``interval_ms`` apart."""

    chunks: int = Field(
        5, ge=1, le=MAX_CHUNKS, description=f"Lines to send; chunks x interval_ms is at most {MAX_REQUEST_MS}."
    )
    interval_ms: int = Field(
        100,
        ge=0,
        le=5_000,
        description=f"Pause between lines, in ms; chunks x interval_ms is at most {MAX_REQUEST_MS}.",
    )

    @model_validator(mode="after")
    def _bounded(self) -> StreamParams:
        if self.chunks * self.interval_ms > MAX_REQUEST_MS:
            raise ValueError(f"chunks x interval_ms must be at most {MAX_REQUEST_MS} ms")
        return self


class Order(BaseModel):
    """``POST /orders`` body. Unknown fields are rejected rather than silently dropped, and
    values are taken as the schema types them: strict, so ``true`` is not the integer 1, and
    as sent: no whitespace is stripped, so what the schema's patterns refuse is refused."""

    model_config = ConfigDict(extra="forbid", strict=True)

    sku: str = Field(min_length=1, max_length=32, pattern=r"^[A-Z0-9][A-Z0-9-]*$", examples=["TS-1001"])
    quantity: JsonInt = Field(ge=1, le=1_000, examples=[2])
    unit_price_cents: JsonInt = Field(ge=0, le=10_000_000, examples=[1999])
    customer_email: str = Field(
        min_length=3,
        max_length=254,
        pattern=rf"^{_EMAIL_PART}+@{_EMAIL_PART}+\.{_EMAIL_PART}+$",
        examples=["ada@example.com"],
    )


class StoredOrder(BaseModel):
    """An order as stored: answered by ``POST /orders`` (201) and ``GET /orders/{order_id}``."""

    order_id: str = Field(description="The order's id, a UUID, as in its Location.")
    sku: str
    quantity: int
    unit_price_cents: int
    total_cents: int
    customer_email: str
    created_at: datetime
    served_by: str


MAX_PAGE = 100


class OrderPageParams(BaseModel):
    """``GET /orders``: newest first, ``limit`` at a time, after the order named by ``after``."""

    limit: int = Field(20, ge=1, le=MAX_PAGE, description="Orders per page.")
    after: UUID | None = Field(None, description="The last order_id of the previous page (its next_after).")


class OrderPage(BaseModel):
    orders: list[StoredOrder]
    next_after: str | None = Field(description="Pass as ?after= for the next page; null on the last page.")


class OrderRef(BaseModel):
    """An order id in a path: a UUID, or 422 (never a query that cannot match)."""

    order_id: UUID


# RFC 9110 token characters are too strict for the keys clients generate (base64 has "/" and
# "="): any visible ASCII, 1 to 255 characters, as wide as the column that stores it.
IDEMPOTENCY_KEY_MAX = 255
IDEMPOTENCY_KEY_PATTERN = rf"^[\x21-\x7e]{{1,{IDEMPOTENCY_KEY_MAX}}}$"


class IdempotencyKey(BaseModel):
    """The ``Idempotency-Key`` request header of ``POST /orders``."""

    key: str = Field(pattern=IDEMPOTENCY_KEY_PATTERN, max_length=IDEMPOTENCY_KEY_MAX)


class DbParams(BaseModel):
    """``GET /db``: one round trip to the database that holds a pooled connection this long."""

    delay_ms: int = Field(10, ge=0, le=MAX_DELAY_MS, description="How long the query runs (pg_sleep), in ms.")


class JobRequest(BaseModel):
    """``POST /jobs`` body: background work to do after the response is sent."""

    model_config = ConfigDict(extra="forbid", strict=True)

    delay_ms: JsonInt = Field(500, ge=0, le=MAX_DELAY_MS)
    work: JsonInt = Field(0, ge=0, le=MAX_WORK)


class Job(BaseModel):
    job_id: str
    status: Literal["queued", "running", "done", "failed"]
    delay_ms: int
    work: int
    accepted_at: float
    started_at: float | None = None
    finished_at: float | None = None
    served_by: str
    error: str | None = Field(None, description="Why a failed job failed (its worker stopped, or the work raised).")


class ErrorDetail(BaseModel):
    loc: list[str | int]
    msg: str
    type: str


class ErrorInfo(BaseModel):
    status: int
    code: str
    message: str
    details: list[ErrorDetail] = []
    request_id: str | None = None


class ErrorBody(BaseModel):
    """The one error shape: services and nginx itself answer every 4xx/5xx with it."""

    error: ErrorInfo


# What /ready checks, in both services, once each is answered.
READY_CHECKS = {"downstream": "ok", "database": "ok"}


class Health(BaseModel):
    status: Literal["ok", "ready"]
    service: str
    served_by: str
    checks: dict[str, str] = {}


class IoResult(BaseModel):
    delay_ms: int
    waited_ms: float
    served_by: str


class CpuResult(BaseModel):
    work: int
    digest: str
    cpu_ms: float
    served_by: str


class FanoutResult(BaseModel):
    calls: int
    delay_ms: int
    elapsed_ms: float
    mode: Literal["concurrent", "sequential"]
    served_by: str


class StreamChunk(BaseModel):
    """One NDJSON line of ``GET /stream``."""

    chunk: int
    of: int
    elapsed_ms: float
    served_by: str


class Inspection(BaseModel):
    """What the framework's Request object sees behind the proxy."""

    framework: Literal["fastapi", "flask"]
    client_ip: str | None
    scheme: str
    host: str
    prefix: str
    path: str
    url: str
    request_id: str
    via_trusted_proxy: bool
    served_by: str
