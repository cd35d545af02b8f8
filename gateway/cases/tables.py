"""Tables of the case registry, declared on :data:`gateway.storage.metadata`.

The schema is created by the Alembic revisions ``0002_cases``, ``0004`` (case
transfers) and ``0005`` (case links); keep them in step (tests/cases compares
them). Nothing here holds an identifier: the
subject is the node-domain pseudonym, and facts are AES-256-GCM ciphertext.
"""

from __future__ import annotations

import sqlalchemy as sa

from gateway.storage import UTCDateTime, metadata

# UTCDateTime stays importable from here: the task store imports it so.
__all__ = [
    "UTCDateTime",
    "case_bottlenecks",
    "case_facts",
    "case_grounds",
    "case_hits",
    "case_link_grounds",
    "case_links",
    "case_participants",
    "case_transfers",
    "cases",
]

cases = sa.Table(
    "cases",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("activity", sa.String(128), nullable=False),
    sa.Column("theme", sa.String(64), nullable=False),
    sa.Column("phase", sa.String(16), nullable=False),
    # Referrer, idempotency key, reference, subject, criteria and reasons are
    # cleared by the retention purge: they can link the skeleton to a person.
    sa.Column("referrer_org_id", sa.String(63)),
    sa.Column("referrer_org_type", sa.String(32)),
    sa.Column("idempotency_key", sa.String(128)),
    sa.Column("external_ref", sa.String(128)),
    sa.Column("subject_pseudonym", sa.String(64), index=True),
    sa.Column("criteria", sa.JSON),
    sa.Column("reason_codes", sa.JSON),
    sa.Column("triage_reason", sa.String(64), nullable=False),
    sa.Column("outcome", sa.String(64), nullable=False),
    sa.Column("opened_at", UTCDateTime, nullable=False),
    sa.Column("triage_at", UTCDateTime),
    sa.Column("accepted_at", UTCDateTime),
    sa.Column("closed_at", UTCDateTime),
    sa.Column("retain_until", UTCDateTime, index=True),
    sa.Column("purged_at", UTCDateTime),
    sa.UniqueConstraint("referrer_org_id", "idempotency_key"),
    sa.CheckConstraint(
        "phase IN ('aanmelding', 'triage', 'casusoverleg', 'afschaling')", name="phase"
    ),
)

case_participants = sa.Table(
    "case_participants",
    metadata,
    sa.Column("case_id", sa.String(32), sa.ForeignKey("cases.id"), primary_key=True),
    sa.Column("node_id", sa.String(63), primary_key=True),
    sa.Column("org_id", sa.String(63), primary_key=True),
    sa.Column("org_type", sa.String(32), nullable=False),
    sa.Column("added_at", UTCDateTime, nullable=False),
)

case_grounds = sa.Table(
    "case_grounds",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("case_id", sa.String(32), sa.ForeignKey("cases.id"), nullable=False, index=True),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("category", sa.String(64), nullable=False),
    sa.Column("provider_org_id", sa.String(63), nullable=False),
    sa.Column("evidence_ref", sa.String(128), nullable=False),
    sa.Column("recorded_at", UTCDateTime, nullable=False),
)

case_hits = sa.Table(
    "case_hits",
    metadata,
    sa.Column("case_id", sa.String(32), sa.ForeignKey("cases.id"), primary_key=True),
    sa.Column("node_id", sa.String(63), primary_key=True),
    # Empty for a hit at a peer node rather than at one of its organisations.
    sa.Column("org_id", sa.String(63), primary_key=True),
    sa.Column("contact_handle", sa.String(200), nullable=False),
    sa.Column("recorded_at", UTCDateTime, nullable=False),
)

case_bottlenecks = sa.Table(
    "case_bottlenecks",
    metadata,
    sa.Column("case_id", sa.String(32), sa.ForeignKey("cases.id"), primary_key=True),
    sa.Column("tag", sa.String(64), primary_key=True),
)

case_facts = sa.Table(
    "case_facts",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("case_id", sa.String(32), sa.ForeignKey("cases.id"), nullable=False, index=True),
    sa.Column("category", sa.String(64), nullable=False),
    sa.Column("provider_node_id", sa.String(63), nullable=False),
    sa.Column("provider_org_id", sa.String(63), nullable=False),
    sa.Column("key_id", sa.String(16), nullable=False),
    # 12-byte nonce || AES-256-GCM ciphertext and tag of a serialized schakel.v1.Fact,
    # minimised for the regie before it was sealed.
    sa.Column("sealed", sa.LargeBinary, nullable=False),
    sa.Column("received_at", UTCDateTime, nullable=False),
    # Days after the case closes that the fact may be kept, from the rule that released
    # it to the regie; NULL: the case's own retention. Revision 0006_fact_retention.
    sa.Column("retention_days", sa.Integer),
)

case_transfers = sa.Table(
    "case_transfers",
    metadata,
    # One hand-over per case: a handed-over case is closed and cannot move again.
    sa.Column("case_id", sa.String(32), sa.ForeignKey("cases.id"), primary_key=True),
    sa.Column("node_id", sa.String(63), nullable=False),
    sa.Column("idempotency_key", sa.String(128), nullable=False),
    sa.Column("reason_code", sa.String(64), nullable=False),
    sa.Column("remote_case_id", sa.String(32), nullable=False),
    sa.Column("transferred_at", UTCDateTime, nullable=False),
)

case_links = sa.Table(
    "case_links",
    metadata,
    # A peer's case this node takes part in: (the case node, its case id).
    sa.Column("node_id", sa.String(63), primary_key=True),
    sa.Column("case_id", sa.String(32), primary_key=True),
    # Bumped by every change; an update writes only over the version it read.
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("activity", sa.String(128), nullable=False),
    sa.Column("phase", sa.String(16), nullable=False),
    # Subject, participants and participant types are cleared by the
    # retention purge; the row stays as a tombstone, so a late update cannot
    # make the link again.
    sa.Column("subject_pseudonym", sa.String(64)),
    sa.Column("participants", sa.JSON),
    sa.Column("org_types", sa.JSON),
    sa.Column("linked_at", UTCDateTime, nullable=False),
    sa.Column("closed_at", UTCDateTime),
    sa.Column("retain_until", UTCDateTime, index=True),
    sa.Column("purged_at", UTCDateTime),
    sa.CheckConstraint("phase IN ('casusoverleg', 'afschaling')", name="phase"),
)

case_link_grounds = sa.Table(
    "case_link_grounds",
    metadata,
    # A ground the case node asserted for one provider within one link.
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("node_id", sa.String(63), nullable=False),
    sa.Column("case_id", sa.String(32), nullable=False),
    sa.Column("provider_node_id", sa.String(63), nullable=False),
    sa.Column("provider_org_id", sa.String(63), nullable=False),
    sa.Column("category", sa.String(64), nullable=False),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("asserted_at", UTCDateTime, nullable=False),
    sa.ForeignKeyConstraint(["node_id", "case_id"], ["case_links.node_id", "case_links.case_id"]),
    sa.UniqueConstraint(
        "node_id", "case_id", "provider_node_id", "provider_org_id", "category", "kind"
    ),
)
