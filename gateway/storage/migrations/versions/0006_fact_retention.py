"""Fact retention: how long after its case closes the node may keep each stored fact.

Revision ID: 0006_fact_retention
Revises: 0005_case_links

A fact is kept for the regie under the rule that released it to the regie;
a rule may keep it shorter than the activity (``retention_days``). The
column holds that rule's days, NULL when the rule names none and the case's
own retention applies.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_fact_retention"
down_revision = "0005_case_links"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add case_facts.retention_days (gateway/cases/tables.py declares the same)."""
    op.add_column("case_facts", sa.Column("retention_days", sa.Integer, nullable=True))


def downgrade() -> None:
    """Drop case_facts.retention_days."""
    with op.batch_alter_table("case_facts") as batch:
        batch.drop_column("retention_days")
