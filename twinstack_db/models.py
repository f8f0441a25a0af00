"""The tables, as typed declarative models. Column limits are the contract's
(twinstack_contract.models): a value the database would reject is refused by the model first,
as a 422, before any SQL."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import BigInteger, CheckConstraint, DateTime, Double, Index, Integer, String, func
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from twinstack_contract.models import Order as OrderBody


def _max_length(field: str) -> int:
    """The contract's max_length of a string field: the column is exactly as wide."""
    return next(m.max_length for m in OrderBody.model_fields[field].metadata if hasattr(m, "max_length"))


SKU_MAX = _max_length("sku")
EMAIL_MAX = _max_length("customer_email")


class Base(DeclarativeBase):
    pass


class Order(Base):
    __tablename__ = "orders"

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True, default=uuid.uuid4)
    sku: Mapped[str] = mapped_column(String(SKU_MAX))
    quantity: Mapped[int] = mapped_column(Integer)
    unit_price_cents: Mapped[int] = mapped_column(BigInteger)
    total_cents: Mapped[int] = mapped_column(BigInteger)
    customer_email: Mapped[str] = mapped_column(String(EMAIL_MAX))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    # A retried POST with the same Idempotency-Key finds this row instead of making a second;
    # the body's digest tells a retry from a different request under a reused key.
    idempotency_key: Mapped[str | None] = mapped_column(String(255), unique=True)
    request_digest: Mapped[str | None] = mapped_column(String(64))

    __table_args__ = (
        CheckConstraint("quantity > 0", name="orders_quantity_positive"),
        CheckConstraint("unit_price_cents >= 0", name="orders_price_not_negative"),
        # Keyset pagination, newest first: GET /orders?after=.
        Index("orders_created_at_id", "created_at", "id"),
    )


class Job(Base):
    """A background job (POST /jobs): any worker of either service, on any machine, reads it.
    Its owner (host:pid:start) and heartbeat tell a reader whether anyone still runs it."""

    __tablename__ = "jobs"

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    status: Mapped[str] = mapped_column(String(16))
    delay_ms: Mapped[int] = mapped_column(Integer)
    work: Mapped[int] = mapped_column(Integer)
    # Seconds since the epoch, as the contract's Job model carries them.
    accepted_at: Mapped[float] = mapped_column(Double)
    started_at: Mapped[float | None] = mapped_column(Double)
    finished_at: Mapped[float | None] = mapped_column(Double)
    served_by: Mapped[str] = mapped_column(String(64))
    error: Mapped[str | None] = mapped_column(String(200))
    owner: Mapped[str] = mapped_column(String(300))
    heartbeat_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    __table_args__ = (
        CheckConstraint("status IN ('queued', 'running', 'done', 'failed')", name="jobs_status_known"),
        # Retention: finished jobs by age, and unfinished ones whose heartbeat stopped.
        Index("jobs_finished_at", "finished_at"),
        Index("jobs_heartbeat_at", "heartbeat_at"),
    )
