"""Case transfers: where a handed-over case went (overdracht), and under which key.

Revision ID: 0003_case_transfers
Revises: 0003_partner_tasks

The file is numbered 0004 because it is the fourth step; its revision id
keeps the name it was first released under, so databases that already ran
it are not migrated again.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_case_transfers"
down_revision = "0003_partner_tasks"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create case_transfers (gateway/cases/tables.py declares the same schema)."""
    op.create_table(
        "case_transfers",
        sa.Column("case_id", sa.String(32), nullable=False),
        sa.Column("node_id", sa.String(63), nullable=False),
        sa.Column("idempotency_key", sa.String(128), nullable=False),
        sa.Column("reason_code", sa.String(64), nullable=False),
        sa.Column("remote_case_id", sa.String(32), nullable=False),
        sa.Column("transferred_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("case_id", name=op.f("pk_case_transfers")),
        sa.ForeignKeyConstraint(["case_id"], ["cases.id"]),
    )


def downgrade() -> None:
    """Drop case_transfers."""
    op.drop_table("case_transfers")
