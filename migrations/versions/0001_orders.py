"""Orders: one row per POST /orders, found again by its Idempotency-Key.

Revision ID: 0001_orders
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001_orders"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "orders",
        sa.Column("id", postgresql.UUID(as_uuid=True), primary_key=True),
        sa.Column("sku", sa.String(32), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("unit_price_cents", sa.BigInteger(), nullable=False),
        sa.Column("total_cents", sa.BigInteger(), nullable=False),
        sa.Column("customer_email", sa.String(254), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("idempotency_key", sa.String(255), nullable=True, unique=True),
        sa.Column("request_digest", sa.String(64), nullable=True),
        sa.CheckConstraint("quantity > 0", name="orders_quantity_positive"),
        sa.CheckConstraint("unit_price_cents >= 0", name="orders_price_not_negative"),
    )
    op.create_index("orders_created_at_id", "orders", ["created_at", "id"])


def downgrade() -> None:
    op.drop_index("orders_created_at_id", table_name="orders")
    op.drop_table("orders")
