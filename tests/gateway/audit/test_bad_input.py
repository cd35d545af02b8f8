"""One caller's bad record never fails another caller's append (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import dataclasses
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schakel.v1 import audit_pb2

from gateway.audit import notes, records
from gateway.audit.store import AuditLog, AuditUnavailable
from gateway.audit.verify import Keys, verify_database
from tests.support.audit import ORIGIN, migrated, record
from tests.support.databases import pg_schema_url


@pytest.fixture
def pg_url() -> Iterator[str]:
    """An empty PostgreSQL schema (the fuzz runs where column sizes are enforced)."""
    yield from pg_schema_url()


async def _append_all(log: AuditLog, batch: list[audit_pb2.AuditRecord]) -> list[object]:
    return await asyncio.gather(*(log.append(r) for r in batch), return_exceptions=True)


async def test_an_overlong_activity_fails_only_its_own_caller(db_url: str) -> None:
    log = AuditLog(migrated(db_url))
    bad = record(activity="zvh." + "x" * 296)
    try:
        outcomes = await _append_all(log, [record(), record(), bad, record(), record()])
        assert isinstance(outcomes[2], records.RecordError)
        assert "processing_activity_id is longer than 255 characters" in str(outcomes[2])
        good = [o for n, o in enumerate(outcomes) if n != 2]
        assert sorted(good) == [0, 1, 2, 3], outcomes  # type: ignore[type-var]
        assert log.head().size == 4
    finally:
        log.close()


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        (
            "foreign_operation_processor",
            "schakel://" + "p" * 300,
            "foreign_operation_processor is longer than 255",
        ),
        ("processing_activity_id", "zvh.\x00x", "processing_activity_id holds a NUL"),
        ("outcome", 40_000, "decision.outcome is not a known"),
        ("start_seconds", 10**15, "start_time must be a valid time"),
    ],
)
def test_every_query_column_is_checked_before_queueing(
    field: str, value: object, message: str
) -> None:
    rec = record()
    if field == "outcome":
        rec.decision.outcome = value  # type: ignore[assignment]
    elif field == "start_seconds":
        rec.start_time.seconds = value  # type: ignore[assignment]
        rec.end_time.seconds = value  # type: ignore[assignment]
    else:
        setattr(rec, field, value)
    with pytest.raises(records.RecordError, match=message):
        records.validate(rec)


@contextmanager
def _writers_held(url: str) -> Iterator[None]:
    """Hold the log's write lock from another connection until the block ends."""
    if url.startswith("sqlite"):
        conn = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None)
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            conn.execute("ROLLBACK")
            conn.close()
        return
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        conn.execute(sa.text("SELECT size FROM audit_head FOR UPDATE"))
        yield
        conn.rollback()
    engine.dispose()


def test_a_batch_the_database_refuses_is_written_record_by_record(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A value the checks do not know about (simulated by switching them off
    # for one marked record) that the database refuses: a start time beyond
    # 64 bits. Only that record may fail; the batch it shared is rewritten.
    real_columns = records.columns

    def columns(rec: audit_pb2.AuditRecord) -> records.Columns:
        cols = real_columns(rec)
        if rec.purpose == "zvh.bad":
            return dataclasses.replace(cols, start_us=1 << 64)
        return cols

    monkeypatch.setattr(records, "columns", columns)
    monkeypatch.setattr(records, "check_columns", lambda cols: None)
    log = AuditLog(migrated(db_url))
    batches: list[int] = []
    write = log._write

    def counting(items):  # type: ignore[no-untyped-def]
        batches.append(len(items))
        return write(items)

    log._write = counting  # type: ignore[method-assign]
    bad = record()
    bad.purpose = "zvh.bad"
    try:
        with _writers_held(db_url):
            plug = log.submit(record())
            time.sleep(0.5)  # the writer now waits for the lock with the plug alone
            futures = [log.submit(r) for r in (record(), bad, record(), record())]
        assert plug.result(timeout=30) == 0
        with pytest.raises(records.RecordError, match="the database refused the record"):
            futures[1].result(timeout=30)
        assert [futures[n].result(timeout=30) for n in (0, 2, 3)] == [1, 2, 3]
        assert batches == [1, 4, 1, 1, 1, 1], "the shared batch is retried one record at a time"
        assert log.head().size == 4
    finally:
        log.close()


def _keys() -> Keys:
    return Keys(notes.Signer.generate(ORIGIN).verifier())


_TEXT = st.text(alphabet=st.characters(codec="utf-8"), max_size=300) | st.sampled_from(
    ["", "\x00", "x" * 255, "x" * 256, "é" * 255, "é" * 256, "\U0001f600" * 200]
)
_INT64 = st.integers(-(2**63), 2**63 - 2)
_INT32 = st.integers(-(2**31), 2**31 - 1)


@st.composite
def _fuzzed(draw: st.DrawFn) -> audit_pb2.AuditRecord:
    rec = record(start_seconds=draw(st.integers(-(2**40), 2**40) | _INT64))
    for name in ("processing_activity_id", "foreign_operation_processor", "name", "purpose"):
        setattr(rec, name, draw(_TEXT))
    rec.data_subject_id = draw(st.sampled_from([rec.data_subject_id, ""]) | _TEXT)
    rec.start_time.nanos = draw(st.sampled_from([0, 999_999_999]) | _INT32)
    rec.end_time.seconds = draw(st.sampled_from([rec.start_time.seconds]) | _INT64)
    rec.end_time.nanos = draw(st.sampled_from([rec.start_time.nanos]) | _INT32)
    rec.decision.outcome = draw(st.integers(0, 3) | _INT32)  # type: ignore[assignment]
    rec.categories_asked[:] = draw(st.lists(_TEXT, max_size=3))
    rec.case_ref.case_id = draw(_TEXT)
    return rec


def _fuzz(url: str, examples: int) -> None:
    log = AuditLog(migrated(url))
    written = 0

    @settings(
        max_examples=examples,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(_fuzzed())
    def append_beside_a_good_record(fuzzed: audit_pb2.AuditRecord) -> None:
        nonlocal written
        mine, other = asyncio.run(_append_all(log, [fuzzed, record()]))
        assert isinstance(other, int), f"a good record failed beside a fuzzed one: {other!r}"
        assert not isinstance(mine, AuditUnavailable), f"bad input made the log unavailable: {mine}"
        assert isinstance(mine, (int, records.RecordError)), repr(mine)
        written += 1 + isinstance(mine, int)

    try:
        append_beside_a_good_record()
        assert log.head().size == written
        report = verify_database(log.engine, _keys())
        assert report.ok, report.message
    finally:
        log.close()


@pytest.mark.postgres
def test_fuzzed_appends_never_fail_another_caller(pg_url: str) -> None:
    _fuzz(pg_url, 60)


@pytest.mark.slow
@pytest.mark.postgres
def test_fuzzed_appends_never_fail_another_caller_long(pg_url: str) -> None:
    _fuzz(pg_url, 1500)
