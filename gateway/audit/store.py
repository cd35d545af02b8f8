"""The append-only audit store: group-committed appends, the head CAS, proofs.

Every append goes through one writer thread per :class:`AuditLog`. The thread
drains whatever callers have queued (up to ``max_batch``), writes them in one
transaction and resolves each caller's future only after the COMMIT, so a
returned index means "durable". The head row is updated in that same
transaction with ``UPDATE ... WHERE size = :old``: a writer in another
process that moved the head first makes the update touch no row, and the
batch is recomputed on the new head. Two writers therefore never fork the
log. There is no buffer that outlives a failed transaction.

Every query column is checked against its database column before a record
is queued (:func:`records.validate`), so one caller's odd value cannot fail
a transaction it shares with others. Should a batch fail on a record's data
all the same, its records are written again one by one: only the record the
database refuses fails (:class:`records.RecordError`). A batch that fails for
any other reason (the database is gone) fails every caller with
:class:`AuditUnavailable`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from google.protobuf import unknown_fields
from schakel.v1 import audit_pb2
from sqlalchemy import Connection, Engine

from gateway.audit import merkle, records, tables
from gateway.audit.tree import (
    Head,
    check_size,
    iter_leaves,
    keep_subtree,
    range_hash,
    read_head,
)
from gateway.logging import get_logger
from gateway.observability import metrics

__all__ = ["AuditLog", "AuditUnavailable", "Clock", "Head", "iter_leaves", "to_us"]

MAX_CAS_ATTEMPTS = 100
ERASE_BATCH = 500
"""Leaves erased per transaction: a purge never holds the write lock for long."""
Clock = Callable[[], datetime]
_MICROSECOND = timedelta(microseconds=1)
_log = get_logger("audit.store")


class AuditUnavailable(Exception):  # noqa: N818 - the name the audit log's callers know
    """The audit record could not be made durable; nothing may be released."""


def to_us(moment: datetime) -> int:
    """Microseconds since the epoch of an aware datetime."""
    if moment.tzinfo is None:
        raise ValueError("datetime must be timezone-aware (UTC)")
    return int(moment.timestamp() * 1_000_000)


def utc_now() -> datetime:
    """The current time in UTC, the log's default clock."""
    return datetime.now(UTC)


@dataclass(slots=True)
class _Item:
    base: bytes
    columns: records.Columns
    retain_until_us: int | None
    # Exactly one is set: a thread waits on ``future``, a coroutine on ``aio``.
    future: concurrent.futures.Future[int] | None = None
    aio: asyncio.Future[int] | None = None


Outcome = int | Exception
"""A queued record's outcome: its index, or the error its caller gets."""


def _settle(entries: list[tuple[asyncio.Future[int], Outcome]]) -> None:
    """Resolve a batch's awaiting futures, inside their event loop."""
    for future, outcome in entries:
        if future.done():  # the caller was cancelled; its record is written anyway
            continue
        if isinstance(outcome, Exception):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)


class AuditLog:
    """One node's audit log over a migrated database.

    ``default_retention`` (counted from a record's end time) sets the
    deadline of every record appended without a ``retain_until``; ``None``
    keeps records until erased by hand. :meth:`erase_expired` erases what
    is due by ``clock``.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        max_batch: int = 2000,
        default_retention: timedelta | None = None,
        clock: Clock = utc_now,
    ) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self.engine = engine
        self.max_batch = max_batch
        self.default_retention = default_retention
        self.clock = clock
        self._queue: queue.SimpleQueue[_Item | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._closed = False

    # -- appending ---------------------------------------------------------

    def _prepare(self, record: audit_pb2.AuditRecord, retain_until: datetime | None) -> _Item:
        cols = records.validate(record)
        if len(unknown_fields.UnknownFieldSet(record)):
            raise records.RecordError("record carries unknown fields; build it from this schema")
        retain_until_us = None
        if retain_until is not None:
            retain_until_us = to_us(retain_until)
        elif self.default_retention is not None:
            # In whole microseconds: no datetime can overflow near the year 9999.
            end_us = record.end_time.ToMicroseconds()
            retain_until_us = end_us + self.default_retention // _MICROSECOND
        return _Item(
            base=record.SerializeToString(deterministic=True),
            columns=cols,
            retain_until_us=retain_until_us,
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

        Raises :class:`records.RecordError` when the record is invalid (or the
        database refused its data) and :class:`AuditUnavailable` when the write failed.
        """
        return self.submit(record, retain_until).result()

    async def append(
        self, record: audit_pb2.AuditRecord, retain_until: datetime | None = None
    ) -> int:
        """Append and await the COMMIT; returns the record's index.

        Raises :class:`records.RecordError` when the record is invalid (or
        the database refused its data) and :class:`AuditUnavailable` when
        the write failed (the node answers ``UNAVAILABLE`` and releases nothing).
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
        except Exception as exc:
            raise self._failure(exc) from None
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
            if live:
                started = time.perf_counter()
                outcomes = self._commit(live)
                metrics.audit_batch(len(live), time.perf_counter() - started)
                self._resolve(live, outcomes)

    def _commit(self, items: list[_Item]) -> list[Outcome]:
        """Write a batch; when a record's data failed it, write its records one by one."""
        try:
            first = self._write(items)
        except Exception as exc:
            # The DB error text can quote parameters (pseudonyms, leaf
            # bytes), so only its type is logged and passed on.
            if len(items) == 1 or not self._record_fault(exc):
                _log.error("audit write failed", error=type(exc).__name__, batch=len(items))
                return [self._failure(exc)] * len(items)
            _log.warning(
                "audit batch refused a record; writing its records one by one",
                error=type(exc).__name__,
                batch=len(items),
            )
            return [outcome for item in items for outcome in self._commit([item])]
        return list(range(first, first + len(items)))

    def _record_fault(self, exc: Exception) -> bool:
        """True when ``exc`` is the database refusing a value, not the database failing."""
        cause = exc.orig if isinstance(exc, sa.exc.StatementError) else exc
        dbapi = self.engine.dialect.loaded_dbapi
        return isinstance(cause, (dbapi.DataError, ValueError, TypeError, OverflowError))

    def _failure(self, exc: Exception) -> Exception:
        """The error a caller gets for a write that failed with ``exc``."""
        if isinstance(exc, AuditUnavailable):
            return exc
        if self._record_fault(exc):
            return records.RecordError(f"the database refused the record: {type(exc).__name__}")
        return AuditUnavailable(f"audit write failed: {type(exc).__name__}")

    @staticmethod
    def _resolve(items: list[_Item], outcomes: list[Outcome]) -> None:
        """Wake every caller of a committed (or failed) batch.

        Coroutine callers are woken with one call into each event loop per
        batch, not one per record: waking a loop from a thread is costly.
        """
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[int], Outcome]]] = {}
        for item, outcome in zip(items, outcomes, strict=True):
            if item.future is not None:
                if isinstance(outcome, Exception):
                    item.future.set_exception(outcome)
                else:
                    item.future.set_result(outcome)
            elif item.aio is not None:
                by_loop.setdefault(item.aio.get_loop(), []).append((item.aio, outcome))
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
                keep = functools.partial(keep_subtree, subtrees)
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
            check_size(conn, size)
            return [range_hash(conn, s, e) for s, e in merkle.inclusion_ranges(index, size)]

    def consistency_proof(self, old_size: int, new_size: int) -> list[bytes]:
        """The RFC 6962 consistency proof from ``old_size`` to ``new_size`` (<= head)."""
        with self.engine.connect() as conn:
            check_size(conn, new_size)
            return [
                range_hash(conn, s, e) for s, e in merkle.consistency_ranges(old_size, new_size)
            ]

    def root_at(self, size: int) -> bytes:
        """The root of the first ``size`` leaves."""
        with self.engine.connect() as conn:
            check_size(conn, size)
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

    def erase_expired(self, now: datetime | None = None, batch: int = ERASE_BATCH) -> int:
        """Erase the bodies (and pseudonym column) of leaves whose retention ended.

        Runs as many short transactions of at most ``batch`` leaves as it
        takes, so appends are never held up behind one long erasure. Leaf
        hashes stay, so the root, earlier proofs and verification hold.
        Returns the number of leaves erased.
        """
        cutoff = to_us(now or self.clock())
        total = 0
        while True:
            erased, full = self.erase_batch(cutoff, batch)
            total += erased
            if not full:
                break
        if total:
            _log.info("audit bodies erased", count=total)
        return total

    def erase_batch(self, cutoff_us: int, limit: int = ERASE_BATCH) -> tuple[int, bool]:
        """Erase up to ``limit`` expired bodies in one transaction.

        An erased leaf leaves the retention index (its deadline is cleared),
        so each batch reads only leaves still due. Returns how many bodies
        were erased and whether the batch was full (more may wait).
        """
        leaf = tables.leaf
        with self.engine.begin() as conn:
            due = conn.execute(
                sa.select(leaf.c.idx, leaf.c.data.is_not(None))
                .where(leaf.c.retain_until_us <= cutoff_us)
                .order_by(leaf.c.retain_until_us)
                .limit(limit)
            ).all()
            if not due:
                return 0, False
            conn.execute(
                leaf.update()
                .where(leaf.c.idx.in_([int(idx) for idx, _ in due]))
                .values(data=None, data_subject_id=None, retain_until_us=None)
            )
        return sum(1 for _, present in due if present), len(due) == limit


_LEAF_COLUMNS = (
    "idx, leaf_hash, data, data_subject_id, processing_activity_id, peer, start_us, outcome,"
    " retain_until_us"
)
_SQLITE_INSERT = f"INSERT INTO audit_leaf ({_LEAF_COLUMNS}) VALUES ({', '.join('?' * 9)})"  # noqa: S608


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
