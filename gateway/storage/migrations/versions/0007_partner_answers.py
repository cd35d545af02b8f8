"""Partner answers: an answer taken by one replica for the replica that asked.

Revision ID: 0007_partner_answers
Revises: 0006_fact_retention

With replicas on PostgreSQL, a partner may answer a task on another
replica than the one whose flow awaits the answer. The answering replica
judges and audits the answer, seals it here under the case vault's key and
notifies; the asking replica takes the row (and deletes it) and goes on.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007_partner_answers"
down_revision = "0006_fact_retention"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create partner_answers (gateway/tasks/relay.py declares the same schema)."""
    op.create_table(
        "partner_answers",
        sa.Column("task_id", sa.String(32), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("key_id", sa.String(16), nullable=False),
        sa.Column("sealed", sa.LargeBinary, nullable=False),
        sa.PrimaryKeyConstraint("task_id", name=op.f("pk_partner_answers")),
    )
    op.create_index(op.f("ix_partner_answers_expires_at"), "partner_answers", ["expires_at"])


def downgrade() -> None:
    """Drop partner_answers."""
    op.drop_table("partner_answers")
