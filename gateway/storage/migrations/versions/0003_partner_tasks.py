"""Partner tasks: the durable queue behind the ReceiveTasks streams.

Revision ID: 0003_partner_tasks
Revises: 0002_cases
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_partner_tasks"
down_revision = "0002_cases"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create partner_tasks (gateway/tasks/store.py declares the same schema)."""
    ts = sa.DateTime(timezone=True)
    op.create_table(
        "partner_tasks",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("org_id", sa.String(63), nullable=False),
        sa.Column("kind", sa.SmallInteger, nullable=False),
        sa.Column("subject_pseudonym", sa.String(64), nullable=True),
        sa.Column("created_at", ts, nullable=False),
        sa.Column("expires_at", ts, nullable=False),
        sa.Column("state", sa.String(8), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("key_id", sa.String(16), nullable=False),
        sa.Column("sealed", sa.LargeBinary, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_partner_tasks")),
        sa.CheckConstraint(
            "state IN ('queued', 'sent', 'done')", name=op.f("ck_partner_tasks_state")
        ),
    )
    op.create_index(op.f("ix_partner_tasks_org_id"), "partner_tasks", ["org_id"])
    op.create_index(op.f("ix_partner_tasks_expires_at"), "partner_tasks", ["expires_at"])


def downgrade() -> None:
    """Drop partner_tasks."""
    op.drop_table("partner_tasks")
