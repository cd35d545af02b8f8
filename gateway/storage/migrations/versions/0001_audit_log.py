"""Audit log: leaves, head, subtree cache, checkpoints, cosignatures, witness state.

Revision ID: 0001_audit_log
Revises:
"""

from __future__ import annotations

import hashlib

import sqlalchemy as sa
from alembic import op

revision = "0001_audit_log"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create the audit tables."""
    op.create_table(
        "audit_leaf",
        # INTEGER on SQLite makes idx the rowid: a scan in log order is one B-tree.
        sa.Column(
            "idx",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            nullable=False,
            autoincrement=False,
        ),
        sa.Column("leaf_hash", sa.LargeBinary(32), nullable=False),
        sa.Column("data", sa.LargeBinary, nullable=True),
        sa.Column("data_subject_id", sa.String(64), nullable=True),
        sa.Column("processing_activity_id", sa.String(255), nullable=False),
        sa.Column("peer", sa.String(255), nullable=False),
        sa.Column("start_us", sa.BigInteger, nullable=False),
        sa.Column("outcome", sa.SmallInteger, nullable=False),
        sa.Column("retain_until_us", sa.BigInteger, nullable=True),
        sa.PrimaryKeyConstraint("idx", name="pk_audit_leaf"),
    )
    for column in (
        "data_subject_id",
        "processing_activity_id",
        "peer",
        "start_us",
        "outcome",
        "retain_until_us",
    ):
        op.create_index(f"ix_audit_leaf_{column}", "audit_leaf", [column])
    op.create_table(
        "audit_head",
        sa.Column("id", sa.Integer, nullable=False, autoincrement=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("root", sa.LargeBinary(32), nullable=False),
        sa.Column("compact", sa.LargeBinary, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_audit_head"),
    )
    # The empty log's head, so writers only ever compare-and-swap it.
    op.execute(
        sa.text(
            "INSERT INTO audit_head (id, size, root, compact) VALUES (1, 0, :root, :compact)"
        ).bindparams(
            sa.bindparam("root", hashlib.sha256(b"").digest(), type_=sa.LargeBinary),
            sa.bindparam("compact", b"", type_=sa.LargeBinary),
        )
    )
    op.create_table(
        "audit_subtree",
        sa.Column("level", sa.SmallInteger, nullable=False, autoincrement=False),
        sa.Column("idx", sa.BigInteger, nullable=False, autoincrement=False),
        sa.Column("hash", sa.LargeBinary(32), nullable=False),
        sa.PrimaryKeyConstraint("level", "idx", name="pk_audit_subtree"),
    )
    op.create_table(
        "audit_checkpoint",
        sa.Column("size", sa.BigInteger, nullable=False, autoincrement=False),
        sa.Column("root", sa.LargeBinary(32), nullable=False),
        sa.Column("note", sa.LargeBinary, nullable=False),
        sa.Column("signed_us", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("size", name="pk_audit_checkpoint"),
    )
    op.create_table(
        "audit_cosignature",
        sa.Column("size", sa.BigInteger, nullable=False, autoincrement=False),
        sa.Column("witness", sa.String(255), nullable=False),
        sa.Column("line", sa.LargeBinary, nullable=False),
        sa.PrimaryKeyConstraint("size", "witness", name="pk_audit_cosignature"),
    )
    op.create_table(
        "audit_witness_state",
        sa.Column("origin", sa.String(255), nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("root", sa.LargeBinary(32), nullable=False),
        sa.Column("updated_us", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("origin", name="pk_audit_witness_state"),
    )


def downgrade() -> None:
    """Drop the audit tables."""
    for table in (
        "audit_witness_state",
        "audit_cosignature",
        "audit_checkpoint",
        "audit_subtree",
        "audit_head",
        "audit_leaf",
    ):
        op.drop_table(table)
