"""Offline verification of an audit log: a node database or an export bundle.

The chain itself (positions, leaf hashes, checkpoints, cosignatures, the
head) is checked by :func:`gateway.audit.chain.verify_leaves`; a bundle is
read by :mod:`gateway.audit.bundle`. A database has more to prove, and this
module proves it:

- the index columns that queries and inzage filter on (subject, activity,
  peer, start time, outcome) are recomputed from each record body, so a
  rewritten column is named by its leaf;
- rows stored beyond the head are verified too and named (a head-only
  rollback leaves them behind), never silently skipped;
- the report counts the erased bodies.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import sqlalchemy as sa
from google.protobuf.message import DecodeError
from schakel.v1 import audit_pb2
from sqlalchemy import Engine

from gateway.audit import tables
from gateway.audit.bundle import EXPORT_FORMAT, BundleError, verify_bundle
from gateway.audit.chain import (
    CheckFailedError,
    Keys,
    LeafRow,
    Progress,
    Report,
    verify_leaves,
)

__all__ = [
    "EXPORT_FORMAT",
    "BundleError",
    "Keys",
    "LeafRow",
    "Report",
    "db_leaves",
    "verify_bundle",
    "verify_database",
    "verify_leaves",
]

BATCH = 1 << 14
_COLUMNS = ("data_subject_id", "processing_activity_id", "peer", "start_us", "outcome")
_PAGE_SQL = (
    "SELECT idx, leaf_hash, data{columns} FROM audit_leaf WHERE idx > {param} AND idx < {end}"
    " ORDER BY idx LIMIT {batch}"
)
# The head and what lies beyond it, read in one statement: one snapshot on
# both databases, so leaves a live writer adds meanwhile are never taken for
# rows beyond the head.
_SNAPSHOT = sa.text(
    "SELECT h.size, h.root,"
    " (SELECT MAX(l.idx) FROM audit_leaf l WHERE l.idx >= h.size)"
    " FROM audit_head h WHERE h.id = :id"
)


def _pages(
    engine: Engine, batch: int, end: int, columns: bool
) -> Iterator[list[tuple[object, ...]]]:
    param = "?" if engine.dialect.paramstyle == "qmark" else "%(after)s"
    extra = "".join(f", {name}" for name in _COLUMNS) if columns else ""
    sql = _PAGE_SQL.format(columns=extra, param=param, end=int(end), batch=int(batch))
    after = -1
    with engine.connect() as conn:
        raw = conn.connection.driver_connection
        assert raw is not None
        cursor = raw.cursor()
        try:
            while True:
                cursor.execute(sql, (after,) if param == "?" else {"after": after})
                rows = cursor.fetchall()
                if not rows:
                    return
                yield rows
                after = rows[-1][0]
        finally:
            cursor.close()


def db_leaves(engine: Engine, end: int, batch: int = BATCH) -> Iterator[LeafRow]:
    """Stream (index, leaf_hash, data) below ``end`` from a database in keyset-paged batches.

    Plain driver cursors: this loop is the verifier's hot path. One page is
    held at a time, so memory stays flat whatever the log's size. (A
    prefetching thread was measured slower: the pages are built under the GIL.)
    """
    for page in _pages(engine, batch, end, columns=False):
        yield from page  # type: ignore[misc]


def _db_rows(engine: Engine, end: int) -> Iterator[tuple[object, ...]]:
    """Leaf rows below ``end`` with their index columns after (index, hash, data)."""
    for page in _pages(engine, BATCH, end, columns=True):
        yield from page


def check_index_columns(rows: Sequence[tuple[object, ...]]) -> None:
    """Recompute each row's index columns from its record body; name the first that differs.

    Raises :class:`CheckFailedError`. An erased body can no longer be read;
    its leaf is proven by its hash alone.
    """
    parse = audit_pb2.AuditRecord.FromString
    for index, _, data, subject, activity, peer, start_us, outcome in rows:
        if data is None:
            continue
        try:
            record = parse(data)  # type: ignore[arg-type]
        except DecodeError as exc:
            raise CheckFailedError(
                f"leaf {index}: its bytes are not an audit record",
                int(index),  # type: ignore[call-overload]
            ) from exc
        start = record.start_time
        # One comparison per column, cheapest first: this runs for every leaf.
        if (
            record.processing_activity_id != activity
            or record.foreign_operation_processor != peer
            or (record.data_subject_id or None) != subject
            or start.seconds * 1_000_000 + start.nanos // 1000 != start_us
            or record.decision.outcome != outcome
        ):
            _name_column(record, (subject, activity, peer, start_us, outcome), index)


def _name_column(record: audit_pb2.AuditRecord, stored: tuple[object, ...], index: object) -> None:
    """Raise the finding for the first of ``stored`` (the index columns) that ``record`` belies."""
    start = record.start_time
    expected = (
        record.data_subject_id or None,
        record.processing_activity_id,
        record.foreign_operation_processor,
        start.seconds * 1_000_000 + start.nanos // 1000,
        int(record.decision.outcome),
    )
    name = next(n for n, a, e in zip(_COLUMNS, stored, expected, strict=True) if a != e)
    raise CheckFailedError(
        f"leaf {index}: its {name} column does not match its record (the column was"
        " rewritten; queries and inzage would miss or misplace the record)",
        int(index),  # type: ignore[call-overload]
    )


def verify_database(
    engine: Engine,
    keys: Keys,
    extra_checkpoints: Sequence[bytes] = (),
    progress: Progress | None = None,
) -> Report:
    """Verify a node database, also while the node keeps appending.

    Checkpoints are read before the head, and the leaves up to the head's
    size (plus any rows stored beyond it at that moment): a live log then
    yields a consistent snapshot, and a checkpoint beyond the stored leaves
    can only mean a shortened log.
    """
    cp, cos = tables.checkpoint, tables.cosignature
    with engine.connect() as conn:
        lines: dict[int, list[bytes]] = {}
        for size, line in conn.execute(sa.select(cos.c.size, cos.c.line).order_by(cos.c.witness)):
            lines.setdefault(int(size), []).append(bytes(line))
        checkpoint_notes = [
            bytes(note) + b"".join(lines.get(int(size), []))
            for size, note in conn.execute(sa.select(cp.c.size, cp.c.note).order_by(cp.c.size))
        ]
        size, root, beyond = conn.execute(_SNAPSHOT, {"id": tables.HEAD_ID}).one()
    head_size = int(size)
    end = max(head_size, int(beyond) + 1) if beyond is not None else head_size
    return verify_leaves(
        _db_rows(engine, end),  # type: ignore[arg-type]
        checkpoint_notes,
        keys,
        head=(head_size, bytes(root)),
        extra_checkpoints=extra_checkpoints,
        progress=progress,
        total=end,
        check_rows=check_index_columns,
    )
