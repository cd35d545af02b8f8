"""The append-only audit store: group-committed appends, the head CAS, proofs.

Every append goes through one writer thread per :class:`AuditLog`. The thread
drains whatever callers have queued (up to ``max_batch``), writes them in one
transaction and resolves each caller's future only after the COMMIT, so a
returned index means "durable". The head row is updated in that same
transaction with ``UPDATE ... WHERE size = :old``: a writer in another
process that moved the head first makes the update touch no row, and the
batch is recomputed on the new head. Two writers therefore never fork the
log. There is no buffer that outlives a failed transaction: a failed write
fails every caller of the batch with :class:`AuditUnavailable`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import queue
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from google.protobuf import unknown_fields
from schakel.v1 import audit_pb2
from sqlalchemy import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from gateway.audit import merkle, records, tables
from gateway.logging import get_logger

SUBTREE_STRIDE = 4
"""Subtree hashes are cached at levels 4, 8, 12, ...: at most 8 reads per proof hash."""
MAX_CAS_ATTEMPTS = 100
_log = get_logger("audit.store")


class AuditUnavailable(Exception):  # noqa: N818 - the name the node and issue #5 use
    """The audit record could not be made durable; nothing may be released."""


def to_us(moment: datetime) -> int:
    """Microseconds since the epoch of an aware datetime."""
    if moment.tzinfo is None:
        raise ValueError("datetime must be timezone-aware (UTC)")
    return int(moment.timestamp() * 1_000_000)


@dataclass(frozen=True)
class Head:
    """The log's current size and root."""

    size: int
    root: bytes


@dataclass(slots=True)
class _Item:
    base: bytes
    columns: records.Columns
    retain_until_us: int | None
    # Exactly one is set: a thread waits on ``future``, a coroutine on ``aio``.
    future: concurrent.futures.Future[int] | None = None
    aio: asyncio.Future[int] | None = None


def _settle(entries: list[tuple[asyncio.Future[int], int, BaseException | None]]) -> None:
    """Resolve a batch's awaiting futures, inside their event loop."""
    for future, index, error in entries:
        if future.done():  # the caller was cancelled; its record is written anyway
            continue
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(index)


class AuditLog:
    """One node's audit log over a migrated database.

    ``default_retention`` (counted from a record's end time) applies when an
    append names no ``retain_until``; ``None`` keeps records until erased by
    hand.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        max_batch: int = 2000,
        default_retention: timedelta | None = None,
    ) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self.engine = engine
        self.max_batch = max_batch
        self.default_retention = default_retention
        self._queue: queue.SimpleQueue[_Item | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._closed = False

    # -- appending ---------------------------------------------------------

    def _prepare(self, record: audit_pb2.AuditRecord, retain_until: datetime | None) -> _Item:
        records.validate(record)
        if len(unknown_fields.UnknownFieldSet(record)):
            raise records.RecordError("record carries unknown fields; build it from this schema")
        if retain_until is None and self.default_retention is not None:
            retain_until = record.end_time.ToDatetime(tzinfo=UTC) + self.default_retention
        return _Item(
            base=record.SerializeToString(deterministic=True),
            columns=records.columns(record),
            retain_until_us=to_us(retain_until) if retain_until is not None else None,
        )

    def submit(
        self, record: audit_pb2.AuditRecord, retain_until: datetime | None = None
    ) -> concurrent.futures.Future[int]:
        """Queue ``record`` for the next group commit; the future gives its index once durable.

        An invalid record raises :class:`records.RecordError` here and nothing is queued.
        """
        item = self._prepare(record, retain_until)
        item.future = concurrent.futures.Future()
        self._enqueue(item)
        return item.future

    def _enqueue(self, item: _Item) -> None:
        with self._lock:
            if self._closed:
                raise AuditUnavailable("the audit log is closed")
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._writer, name="audit-writer", daemon=True
                )
                self._thread.start()
            self._queue.put(item)

    def append_sync(
        self, record: audit_pb2.AuditRecord, retain_until: datetime | None = None
    ) -> int:
        """Append and wait for the COMMIT; returns the record's index.

        Raises :class:`AuditUnavailable` when the write failed.
        """
        return self.submit(record, retain_until).result()

    async def append(
        self, record: audit_pb2.AuditRecord, retain_until: datetime | None = None
    ) -> int:
        """Append and await the COMMIT; returns the record's index.

        Raises :class:`AuditUnavailable` when the write failed (the node
        answers ``UNAVAILABLE`` and releases nothing).
        """
        item = self._prepare(record, retain_until)
        item.aio = asyncio.get_running_loop().create_future()
        self._enqueue(item)
        return await item.aio

    def append_many(
        self,
        batch: Sequence[audit_pb2.AuditRecord],
        retain_until: datetime | None = None,
    ) -> list[int]:
        """Append ``batch`` in one transaction from the calling thread, bypassing the queue."""
        items = [self._prepare(r, retain_until) for r in batch]
        try:
            first = self._write(items)
        except SQLAlchemyError as exc:
            raise AuditUnavailable(f"audit write failed: {type(exc).__name__}") from None
        return list(range(first, first + len(items)))

    def close(self) -> None:
        """Finish the queued appends and stop the writer thread."""
        with self._lock:
            self._closed = True
            thread = self._thread
            if thread is not None:
                self._queue.put(None)
        if thread is not None:
            thread.join()

    def _writer(self) -> None:
        stop = False
        while not stop:
            first_item = self._queue.get()
            if first_item is None:
                return
            batch = [first_item]
            while len(batch) < self.max_batch:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stop = True
                    break
                batch.append(item)
            live = [i for i in batch if i.future is None or i.future.set_running_or_notify_cancel()]
            if not live:
                continue
            error: AuditUnavailable | None = None
            first = 0
            try:
                first = self._write(live)
            except Exception as exc:
                # The DB error text can quote parameters (pseudonyms, leaf
                # bytes), so only its type is logged and passed on.
                _log.error("audit write failed", error=type(exc).__name__, batch=len(live))
                error = AuditUnavailable(f"audit write failed: {type(exc).__name__}")
            self._resolve(live, first, error)

    @staticmethod
    def _resolve(items: list[_Item], first: int, error: AuditUnavailable | None) -> None:
        """Wake every caller of a committed (or failed) batch.

        Coroutine callers are woken with one call into each event loop per
        batch, not one per record: waking a loop from a thread is costly.
        """
        by_loop: dict[
            asyncio.AbstractEventLoop, list[tuple[asyncio.Future[int], int, BaseException | None]]
        ] = {}
        for n, item in enumerate(items):
            if item.future is not None:
                if error is not None:
                    item.future.set_exception(error)
                else:
                    item.future.set_result(first + n)
            elif item.aio is not None:
                by_loop.setdefault(item.aio.get_loop(), []).append((item.aio, first + n, error))
        for loop, entries in by_loop.items():
            with contextlib.suppress(RuntimeError):  # that loop has closed: nobody waits
                loop.call_soon_threadsafe(_settle, entries)

    def _write(self, items: Sequence[_Item]) -> int:
        """Write ``items`` as one transaction on the current head; returns the first index."""
        for _attempt in range(MAX_CAS_ATTEMPTS):
            with self.engine.connect() as conn:
                # FOR UPDATE (PostgreSQL) queues concurrent writers on the head
                # row instead of letting them compute a batch that the CAS
                # below would then throw away; the CAS still guards SQLite,
                # where writers serialise on the database lock instead.
                row = conn.execute(
                    sa.select(tables.head.c.size, tables.head.c.compact)
                    .where(tables.head.c.id == tables.HEAD_ID)
                    .with_for_update()
                ).one()
                old_size = int(row.size)
                compact = merkle.CompactRange.unpack(old_size, bytes(row.compact))
                subtrees: list[dict[str, object]] = []
                keep = functools.partial(_keep_subtree, subtrees)
                leaves: list[tuple[object, ...]] = []
                for n, item in enumerate(items):
                    data = item.base + records.index_suffix(old_size + n)
                    digest = merkle.leaf_hash(data)
                    compact.append(digest, keep)
                    cols = item.columns
                    leaves.append(
                        (
                            old_size + n,
                            digest,
                            data,
                            cols.data_subject_id,
                            cols.processing_activity_id,
                            cols.peer,
                            cols.start_us,
                            cols.outcome,
                            item.retain_until_us,
                        )
                    )
                moved = conn.execute(
                    tables.head.update()
                    .where(tables.head.c.id == tables.HEAD_ID, tables.head.c.size == old_size)
                    .values(size=compact.size, root=compact.root(), compact=compact.packed())
                )
                if moved.rowcount != 1:
                    conn.rollback()
                    continue
                _insert_leaves(conn, leaves)
                if subtrees:
                    conn.execute(tables.subtree.insert(), subtrees)
                conn.commit()
                return old_size
        raise AuditUnavailable(f"lost the head race {MAX_CAS_ATTEMPTS} times in a row")

    # -- reading -----------------------------------------------------------

    def head(self) -> Head:
        """The current size and root."""
        with self.engine.connect() as conn:
            return read_head(conn)

    def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        """The audit path of leaf ``index`` in the tree of ``size`` leaves (size <= head)."""
        with self.engine.connect() as conn:
            _check_size(conn, size)
            return [range_hash(conn, s, e) for s, e in merkle.inclusion_ranges(index, size)]

    def consistency_proof(self, old_size: int, new_size: int) -> list[bytes]:
        """The RFC 6962 consistency proof from ``old_size`` to ``new_size`` (<= head)."""
        with self.engine.connect() as conn:
            _check_size(conn, new_size)
            return [
                range_hash(conn, s, e) for s, e in merkle.consistency_ranges(old_size, new_size)
            ]

    def root_at(self, size: int) -> bytes:
        """The root of the first ``size`` leaves."""
        with self.engine.connect() as conn:
            _check_size(conn, size)
            return range_hash(conn, 0, size) if size else merkle.EMPTY_ROOT

    def leaf_hash_at(self, index: int) -> bytes:
        """The stored leaf hash at ``index``."""
        with self.engine.connect() as conn:
            value = conn.execute(
                sa.select(tables.leaf.c.leaf_hash).where(tables.leaf.c.idx == index)
            ).scalar()
        if value is None:
            raise IndexError(f"no leaf at index {index}")
        return bytes(value)

    def erase_expired(self, now: datetime | None = None) -> int:
        """Erase the bodies (and pseudonym column) of leaves whose retention ended.

        Leaf hashes stay, so the root, earlier proofs and verification hold.
        Returns the number of leaves erased.
        """
        cutoff = to_us(now or datetime.now(UTC))
        leaf = tables.leaf
        with self.engine.begin() as conn:
            result = conn.execute(
                leaf.update()
                .where(leaf.c.retain_until_us <= cutoff, leaf.c.data.is_not(None))
                .values(data=None, data_subject_id=None)
            )
        count = int(result.rowcount)
        _log.info("audit bodies erased", count=count)
        return count


def _keep_subtree(out: list[dict[str, object]], level: int, index: int, digest: bytes) -> None:
    if level % SUBTREE_STRIDE == 0:
        out.append({"level": level, "idx": index, "hash": digest})


_LEAF_COLUMNS = (
    "idx, leaf_hash, data, data_subject_id, processing_activity_id, peer, start_us, outcome,"
    " retain_until_us"
)
_SQLITE_INSERT = (
    "INSERT INTO audit_leaf (idx, leaf_hash, data, data_subject_id, processing_activity_id,"
    " peer, start_us, outcome, retain_until_us) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


def _insert_leaves(conn: Connection, rows: list[tuple[object, ...]]) -> None:
    """Bulk-insert leaf rows through the driver: COPY on PostgreSQL, executemany on SQLite.

    Going below SQLAlchemy's per-row parameter processing is what lets one
    group commit carry thousands of leaves in a few milliseconds.
    """
    if conn.dialect.name == "postgresql":
        raw = conn.connection.driver_connection
        assert raw is not None
        with raw.cursor() as cur, cur.copy(f"COPY audit_leaf ({_LEAF_COLUMNS}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
    else:
        conn.exec_driver_sql(_SQLITE_INSERT, rows)


def read_head(conn: Connection) -> Head:
    """The head row as seen by ``conn``."""
    row = conn.execute(
        sa.select(tables.head.c.size, tables.head.c.root).where(tables.head.c.id == tables.HEAD_ID)
    ).one()
    return Head(int(row.size), bytes(row.root))


def _check_size(conn: Connection, size: int) -> None:
    current = read_head(conn).size
    if not 0 <= size <= current:
        raise merkle.ProofError(f"tree size {size} is beyond the log's size {current}")


def _fold(hashes: list[bytes]) -> bytes:
    """The root of a perfect subtree given its 2**k bottom hashes."""
    while len(hashes) > 1:
        hashes = [merkle.node_hash(hashes[i], hashes[i + 1]) for i in range(0, len(hashes), 2)]
    return hashes[0]


def _perfect_hash(conn: Connection, level: int, index: int) -> bytes:
    stored = level - level % SUBTREE_STRIDE
    span = 1 << (level - stored)
    lo = index * span
    if stored == 0:
        t = tables.leaf
        rows = conn.execute(
            sa.select(t.c.leaf_hash).where(t.c.idx >= lo, t.c.idx < lo + span).order_by(t.c.idx)
        ).scalars()
    else:
        s = tables.subtree
        rows = conn.execute(
            sa.select(s.c.hash)
            .where(s.c.level == stored, s.c.idx >= lo, s.c.idx < lo + span)
            .order_by(s.c.idx)
        ).scalars()
    hashes = [bytes(h) for h in rows]
    if len(hashes) != span:
        raise merkle.ProofError(f"stored hashes missing under subtree ({level}, {index})")
    return _fold(hashes)


def range_hash(conn: Connection, start: int, end: int) -> bytes:
    """The Merkle tree hash of leaves [start, end), from cached subtrees and leaf hashes."""
    parts = [_perfect_hash(conn, lv, ix) for lv, ix in merkle.perfect_subtrees(start, end)]
    root = parts[-1]
    for h in reversed(parts[:-1]):
        root = merkle.node_hash(h, root)
    return root


def iter_leaves(
    conn: Connection, start: int = 0, end: int | None = None, batch: int = 10_000
) -> Iterator[tuple[int, bytes, bytes | None]]:
    """(index, leaf_hash, data) in index order, fetched in keyset-paged batches."""
    leaf = tables.leaf
    after = start - 1
    while True:
        query = sa.select(leaf.c.idx, leaf.c.leaf_hash, leaf.c.data).where(leaf.c.idx > after)
        if end is not None:
            query = query.where(leaf.c.idx < end)
        rows = conn.execute(query.order_by(leaf.c.idx).limit(batch)).all()
        if not rows:
            return
        for idx, digest, data in rows:
            yield int(idx), bytes(digest), None if data is None else bytes(data)
        after = int(rows[-1][0])
