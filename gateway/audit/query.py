"""Queries over the audit log's indexed columns, answered as AuditEntry messages."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa
from schakel.v1 import audit_pb2, common_pb2
from sqlalchemy import Connection, Engine

from gateway.audit import records, tables
from gateway.audit.store import to_us

MAX_LIMIT = 10_000
MAX_TEXT = 255
"""The length of the text columns a query filters on."""


@dataclass(frozen=True)
class Filter:
    """Query filters; None does not filter."""

    data_subject_id: str | None = None
    processing_activity_id: str | None = None
    peer: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    outcome: int | None = None
    limit: int = MAX_LIMIT
    newest_first: bool = False
    """Newest first (and ``limit`` takes the newest), instead of oldest first."""

    @classmethod
    def from_proto(cls, query: audit_pb2.AuditQuery) -> Filter:
        """From the API's AuditQuery; raises ValueError for an impossible query."""
        since = query.since.ToDatetime(tzinfo=UTC) if query.HasField("since") else None
        until = query.until.ToDatetime(tzinfo=UTC) if query.HasField("until") else None
        return cls(
            data_subject_id=query.data_subject_id or None,
            processing_activity_id=query.processing_activity_id or None,
            peer=query.peer or None,
            since=since,
            until=until,
            outcome=query.outcome or None,
            limit=query.limit or MAX_LIMIT,
        ).checked()

    def to_proto(self) -> audit_pb2.AuditQuery:
        """The API's AuditQuery for these filters, to ask a running node."""
        query = audit_pb2.AuditQuery(
            data_subject_id=self.data_subject_id or "",
            processing_activity_id=self.processing_activity_id or "",
            peer=self.peer or "",
            outcome=self.outcome or 0,  # type: ignore[arg-type]
            limit=self.limit,
        )
        if self.since is not None:
            query.since.FromDatetime(self.since)
        if self.until is not None:
            query.until.FromDatetime(self.until)
        return query

    def checked(self) -> Filter:
        """Self, after checking the values; raises ValueError naming the bad one."""
        if self.data_subject_id is not None and not records.is_pseudonym(self.data_subject_id):
            raise ValueError("data_subject_id must be 64 lowercase hex characters")
        for name in ("processing_activity_id", "peer"):
            value = getattr(self, name)
            # The columns hold at most this much, and PostgreSQL refuses NUL in any text.
            if value is not None and (len(value) > MAX_TEXT or "\x00" in value):
                raise ValueError(f"{name} must be at most {MAX_TEXT} characters, without NUL")
        if self.outcome is not None and self.outcome not in common_pb2.DecisionOutcome.values():
            raise ValueError(f"unknown decision outcome {self.outcome}")
        if not 1 <= self.limit <= MAX_LIMIT:
            raise ValueError(f"limit must be between 1 and {MAX_LIMIT}")
        if self.since and self.until and self.until <= self.since:
            raise ValueError("until must be after since")
        return self


def entry(index: int, digest: bytes, data: bytes | None) -> audit_pb2.AuditEntry:
    """An AuditEntry from a stored row."""
    if data is None:
        return audit_pb2.AuditEntry(index=index, leaf_hash=digest, erased=True)
    return audit_pb2.AuditEntry(
        index=index, leaf_hash=digest, leaf_data=data, record=records.decode(data)
    )


def select(conn: Connection, where: Filter) -> Iterator[audit_pb2.AuditEntry]:
    """Matching entries, oldest first (newest first when the filter says so)."""
    leaf = tables.leaf
    query = sa.select(leaf.c.idx, leaf.c.leaf_hash, leaf.c.data)
    if where.data_subject_id is not None:
        query = query.where(leaf.c.data_subject_id == where.data_subject_id)
    if where.processing_activity_id is not None:
        query = query.where(leaf.c.processing_activity_id == where.processing_activity_id)
    if where.peer is not None:
        query = query.where(leaf.c.peer == where.peer)
    if where.since is not None:
        query = query.where(leaf.c.start_us >= to_us(where.since))
    if where.until is not None:
        query = query.where(leaf.c.start_us < to_us(where.until))
    if where.outcome is not None:
        query = query.where(leaf.c.outcome == where.outcome)
    order = leaf.c.idx.desc() if where.newest_first else leaf.c.idx
    for idx, digest, data in conn.execute(query.order_by(order).limit(where.limit)):
        yield entry(int(idx), bytes(digest), None if data is None else bytes(data))


def query(engine: Engine, where: Filter) -> list[audit_pb2.AuditEntry]:
    """Matching entries, oldest or newest first (at most ``where.limit``)."""
    with engine.connect() as conn:
        return list(select(conn, where.checked()))


def one(engine: Engine, index: int) -> audit_pb2.AuditEntry | None:
    """The entry at ``index``, or None when the log is not that long."""
    leaf = tables.leaf
    with engine.connect() as conn:
        row = conn.execute(
            sa.select(leaf.c.idx, leaf.c.leaf_hash, leaf.c.data).where(leaf.c.idx == index)
        ).first()
    if row is None:
        return None
    return entry(int(row.idx), bytes(row.leaf_hash), None if row.data is None else bytes(row.data))
