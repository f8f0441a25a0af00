"""Jobs: background work any worker (and any replica) can report on, instead of files under run/.

Revision ID: 0002_jobs
Revises: 0001_orders
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0002_jobs"
down_revision = "0001_orders"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "jobs",
        sa.Column("id", postgresql.UUID(as_uuid=True), primary_key=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("delay_ms", sa.Integer(), nullable=False),
        sa.Column("work", sa.Integer(), nullable=False),
        sa.Column("accepted_at", sa.Double(), nullable=False),
        sa.Column("started_at", sa.Double(), nullable=True),
        sa.Column("finished_at", sa.Double(), nullable=True),
        sa.Column("served_by", sa.String(64), nullable=False),
        sa.Column("error", sa.String(200), nullable=True),
        sa.Column("owner", sa.String(300), nullable=False),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.CheckConstraint("status IN ('queued', 'running', 'done', 'failed')", name="jobs_status_known"),
    )
    op.create_index("jobs_finished_at", "jobs", ["finished_at"])
    op.create_index("jobs_heartbeat_at", "jobs", ["heartbeat_at"])


def downgrade() -> None:
    op.drop_index("jobs_heartbeat_at", table_name="jobs")
    op.drop_index("jobs_finished_at", table_name="jobs")
    op.drop_table("jobs")
