"""Case links: the peers' cases this node takes part in, and the grounds they asserted.

Revision ID: 0005_case_links
Revises: 0003_case_transfers
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_case_links"
down_revision = "0003_case_transfers"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create case_links and case_link_grounds (gateway/cases/tables.py declares the same)."""
    ts = sa.DateTime(timezone=True)
    op.create_table(
        "case_links",
        sa.Column("node_id", sa.String(63), nullable=False),
        sa.Column("case_id", sa.String(32), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("activity", sa.String(128), nullable=False),
        sa.Column("phase", sa.String(16), nullable=False),
        sa.Column("subject_pseudonym", sa.String(64), nullable=True),
        sa.Column("participants", sa.JSON, nullable=True),
        sa.Column("org_types", sa.JSON, nullable=True),
        sa.Column("linked_at", ts, nullable=False),
        sa.Column("closed_at", ts, nullable=True),
        sa.Column("retain_until", ts, nullable=True),
        sa.Column("purged_at", ts, nullable=True),
        sa.PrimaryKeyConstraint("node_id", "case_id", name=op.f("pk_case_links")),
        sa.CheckConstraint(
            "phase IN ('casusoverleg', 'afschaling')", name=op.f("ck_case_links_phase")
        ),
    )
    op.create_index(op.f("ix_case_links_retain_until"), "case_links", ["retain_until"])
    op.create_table(
        "case_link_grounds",
        sa.Column("id", sa.Integer, autoincrement=True, nullable=False),
        sa.Column("node_id", sa.String(63), nullable=False),
        sa.Column("case_id", sa.String(32), nullable=False),
        sa.Column("provider_node_id", sa.String(63), nullable=False),
        sa.Column("provider_org_id", sa.String(63), nullable=False),
        sa.Column("category", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("asserted_at", ts, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_case_link_grounds")),
        sa.ForeignKeyConstraint(
            ["node_id", "case_id"],
            ["case_links.node_id", "case_links.case_id"],
            name=op.f("fk_case_link_grounds_node_id_case_links"),
        ),
        sa.UniqueConstraint(
            "node_id",
            "case_id",
            "provider_node_id",
            "provider_org_id",
            "category",
            "kind",
            name=op.f("uq_case_link_grounds_node_id"),
        ),
    )


def downgrade() -> None:
    """Drop the link tables."""
    op.drop_table("case_link_grounds")
    op.drop_table("case_links")
