"""Case registry: cases, participants, grounds, hits, bottleneck tags and the fact vault.

Revision ID: 0002_cases
Revises: 0001_audit_log
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_cases"
down_revision = "0001_audit_log"
branch_labels = None
depends_on = None


def _case_fk() -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(["case_id"], ["cases.id"])


def upgrade() -> None:
    """Create the case tables (gateway/cases/tables.py declares the same schema)."""
    ts = sa.DateTime(timezone=True)
    op.create_table(
        "cases",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("activity", sa.String(128), nullable=False),
        sa.Column("theme", sa.String(64), nullable=False),
        sa.Column("phase", sa.String(16), nullable=False),
        sa.Column("referrer_org_id", sa.String(63), nullable=True),
        sa.Column("referrer_org_type", sa.String(32), nullable=True),
        sa.Column("idempotency_key", sa.String(128), nullable=True),
        sa.Column("external_ref", sa.String(128), nullable=True),
        sa.Column("subject_pseudonym", sa.String(64), nullable=True),
        sa.Column("criteria", sa.JSON, nullable=True),
        sa.Column("reason_codes", sa.JSON, nullable=True),
        sa.Column("triage_reason", sa.String(64), nullable=False),
        sa.Column("outcome", sa.String(64), nullable=False),
        sa.Column("opened_at", ts, nullable=False),
        sa.Column("triage_at", ts, nullable=True),
        sa.Column("accepted_at", ts, nullable=True),
        sa.Column("closed_at", ts, nullable=True),
        sa.Column("retain_until", ts, nullable=True),
        sa.Column("purged_at", ts, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cases")),
        sa.UniqueConstraint(
            "referrer_org_id", "idempotency_key", name=op.f("uq_cases_referrer_org_id")
        ),
        sa.CheckConstraint(
            "phase IN ('aanmelding', 'triage', 'casusoverleg', 'afschaling')",
            name=op.f("ck_cases_phase"),
        ),
    )
    op.create_index(op.f("ix_cases_subject_pseudonym"), "cases", ["subject_pseudonym"])
    op.create_index(op.f("ix_cases_retain_until"), "cases", ["retain_until"])
    op.create_table(
        "case_participants",
        sa.Column("case_id", sa.String(32), nullable=False),
        sa.Column("node_id", sa.String(63), nullable=False),
        sa.Column("org_id", sa.String(63), nullable=False),
        sa.Column("org_type", sa.String(32), nullable=False),
        sa.Column("added_at", ts, nullable=False),
        sa.PrimaryKeyConstraint("case_id", "node_id", "org_id", name=op.f("pk_case_participants")),
        _case_fk(),
    )
    op.create_table(
        "case_grounds",
        sa.Column("id", sa.Integer, nullable=False, autoincrement=True),
        sa.Column("case_id", sa.String(32), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("category", sa.String(64), nullable=False),
        sa.Column("provider_org_id", sa.String(63), nullable=False),
        sa.Column("evidence_ref", sa.String(128), nullable=False),
        sa.Column("recorded_at", ts, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_case_grounds")),
        _case_fk(),
    )
    op.create_index(op.f("ix_case_grounds_case_id"), "case_grounds", ["case_id"])
    op.create_table(
        "case_hits",
        sa.Column("case_id", sa.String(32), nullable=False),
        sa.Column("node_id", sa.String(63), nullable=False),
        sa.Column("org_id", sa.String(63), nullable=False),
        sa.Column("contact_handle", sa.String(200), nullable=False),
        sa.Column("recorded_at", ts, nullable=False),
        sa.PrimaryKeyConstraint("case_id", "node_id", "org_id", name=op.f("pk_case_hits")),
        _case_fk(),
    )
    op.create_table(
        "case_bottlenecks",
        sa.Column("case_id", sa.String(32), nullable=False),
        sa.Column("tag", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("case_id", "tag", name=op.f("pk_case_bottlenecks")),
        _case_fk(),
    )
    op.create_table(
        "case_facts",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("case_id", sa.String(32), nullable=False),
        sa.Column("category", sa.String(64), nullable=False),
        sa.Column("provider_node_id", sa.String(63), nullable=False),
        sa.Column("provider_org_id", sa.String(63), nullable=False),
        sa.Column("key_id", sa.String(16), nullable=False),
        sa.Column("sealed", sa.LargeBinary, nullable=False),
        sa.Column("received_at", ts, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_case_facts")),
        _case_fk(),
    )
    op.create_index(op.f("ix_case_facts_case_id"), "case_facts", ["case_id"])


def downgrade() -> None:
    """Drop the case tables."""
    for table in (
        "case_facts",
        "case_bottlenecks",
        "case_hits",
        "case_grounds",
        "case_participants",
    ):
        op.drop_table(table)
    op.drop_table("cases")
