"""The audit log's tables, declared on the node's one MetaData.

Times are integer microseconds since the Unix epoch (UTC) so that SQLite and
PostgreSQL compare them the same way. The schema itself is created by the
Alembic revision ``0001_audit_log``.
"""

from __future__ import annotations

import sqlalchemy as sa

from gateway.storage import metadata

HEAD_ID = 1

LEAF_INDEX = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
"""On SQLite an INTEGER primary key is the rowid itself, so a verifier's scan
in index order reads one B-tree instead of an index plus the table."""

leaf = sa.Table(
    "audit_leaf",
    metadata,
    sa.Column("idx", LEAF_INDEX, primary_key=True, autoincrement=False),
    sa.Column("leaf_hash", sa.LargeBinary(32), nullable=False),
    # The exact hashed bytes; NULL once erased at the end of retention.
    sa.Column("data", sa.LargeBinary, nullable=True),
    sa.Column("data_subject_id", sa.String(64), nullable=True, index=True),
    sa.Column("processing_activity_id", sa.String(255), nullable=False, index=True),
    sa.Column("peer", sa.String(255), nullable=False, index=True),
    sa.Column("start_us", sa.BigInteger, nullable=False, index=True),
    sa.Column("outcome", sa.SmallInteger, nullable=False, index=True),
    sa.Column("retain_until_us", sa.BigInteger, nullable=True, index=True),
)

head = sa.Table(
    "audit_head",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("root", sa.LargeBinary(32), nullable=False),
    # Right-edge perfect subtree roots, concatenated (CompactRange.packed).
    sa.Column("compact", sa.LargeBinary, nullable=False),
)

subtree = sa.Table(
    "audit_subtree",
    metadata,
    # Perfect subtrees of 2**level leaves at levels that are multiples of
    # SUBTREE_STRIDE, so any proof hash costs at most 2**(stride-1) reads.
    sa.Column("level", sa.SmallInteger, primary_key=True, autoincrement=False),
    sa.Column("idx", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("hash", sa.LargeBinary(32), nullable=False),
)

checkpoint = sa.Table(
    "audit_checkpoint",
    metadata,
    sa.Column("size", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("root", sa.LargeBinary(32), nullable=False),
    # The signed note (body + the log's signature line), without cosignatures.
    sa.Column("note", sa.LargeBinary, nullable=False),
    sa.Column("signed_us", sa.BigInteger, nullable=False),
)

cosignature = sa.Table(
    "audit_cosignature",
    metadata,
    sa.Column("size", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("witness", sa.String(255), primary_key=True),
    # One signed-note signature line, "— <name> <base64>\n".
    sa.Column("line", sa.LargeBinary, nullable=False),
)

witness_state = sa.Table(
    "audit_witness_state",
    metadata,
    # The newest (size, root) this node, as a witness, cosigned for a peer log.
    sa.Column("origin", sa.String(255), primary_key=True),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("root", sa.LargeBinary(32), nullable=False),
    sa.Column("updated_us", sa.BigInteger, nullable=False),
)
