"""The append-only store on SQLite and PostgreSQL: group commit, CAS, proofs, erasure."""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st
from schakel.v1 import audit_pb2

from gateway.audit import merkle, records, tables
from gateway.audit.store import AuditLog, AuditUnavailable
from tests.support.audit import migrated, record, reference_root


def _stored(log: AuditLog) -> list[tuple[int, bytes, bytes | None]]:
    with log.engine.connect() as conn:
        rows = conn.execute(
            sa.select(tables.leaf.c.idx, tables.leaf.c.leaf_hash, tables.leaf.c.data).order_by(
                tables.leaf.c.idx
            )
        ).all()
    return [(int(i), bytes(h), None if d is None else bytes(d)) for i, h, d in rows]


def test_sync_appends_are_consecutive_and_match_the_reference_root(db_url: str) -> None:
    log = AuditLog(migrated(db_url))
    try:
        indexes = [log.append_sync(record()) for _ in range(21)]
        assert indexes == list(range(21))
        rows = _stored(log)
        datas = [d for _, _, d in rows if d is not None]
        assert log.head().root == reference_root(datas)
        for index, digest, data in rows:
            assert data is not None
            assert digest == merkle.leaf_hash(data)
            assert records.decode(data).log_index == index
    finally:
        log.close()


async def test_async_group_commit_batches_concurrent_appends(db_url: str) -> None:
    log = AuditLog(migrated(db_url), max_batch=64)
    batches: list[int] = []
    write = log._write

    def counting(items):  # type: ignore[no-untyped-def]
        batches.append(len(items))
        return write(items)

    log._write = counting  # type: ignore[method-assign]
    try:
        indexes = await asyncio.gather(*(log.append(record()) for _ in range(300)))
        assert sorted(indexes) == list(range(300))
        assert max(batches) > 1, "concurrent appends must share transactions"
        assert max(batches) <= 64
        assert sum(batches) == 300
        assert log.head().size == 300
    finally:
        log.close()


def test_two_logs_on_one_database_never_fork(db_url: str) -> None:
    first, second = AuditLog(migrated(db_url)), AuditLog(migrated(db_url))
    results: list[int] = []
    lock = threading.Lock()

    def work(log: AuditLog) -> None:
        for _ in range(40):
            got = log.append_many([record(), record()])
            with lock:
                results.extend(got)

    threads = [threading.Thread(target=work, args=(log,)) for log in (first, second, first)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == list(range(240))
    rows = _stored(first)
    assert [i for i, _, _ in rows] == list(range(240))
    assert first.head().root == reference_root([d for _, _, d in rows if d is not None])


def test_invalid_record_is_refused_and_changes_nothing(db_url: str) -> None:
    log = AuditLog(migrated(db_url))
    log.append_sync(record())
    before = log.head()
    bad = record()
    bad.trace_id = "xyz"
    with pytest.raises(records.RecordError, match="trace_id must be 32 lowercase hex"):
        log.append_sync(bad)
    placed = record()
    placed.log_index = 7
    with pytest.raises(records.RecordError, match="log_index is assigned by the log"):
        log.submit(placed)
    no_time = record()
    no_time.ClearField("end_time")
    with pytest.raises(records.RecordError, match="start_time and end_time are required"):
        log.append_many([record(), no_time])
    assert log.head() == before
    assert len(_stored(log)) == 1
    log.close()


async def test_failed_write_fails_every_caller_of_the_batch(db_url: str) -> None:
    engine = migrated(db_url)
    log = AuditLog(engine)
    await log.append(record())
    with engine.begin() as conn:
        conn.execute(sa.text("ALTER TABLE audit_leaf RENAME TO audit_leaf_gone"))
    try:
        results = await asyncio.gather(
            *(log.append(record()) for _ in range(20)), return_exceptions=True
        )
        assert len(results) == 20
        assert all(isinstance(r, AuditUnavailable) for r in results)
        assert log.head().size == 1, "the head moved although the leaves were not written"
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text("ALTER TABLE audit_leaf_gone RENAME TO audit_leaf"))
    assert await log.append(record()) == 1
    log.close()


def test_closed_log_refuses_appends(db_url: str) -> None:
    log = AuditLog(migrated(db_url))
    log.append_sync(record())
    log.close()
    with pytest.raises(AuditUnavailable, match="closed"):
        log.submit(record())


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 2**63 - 1))
def test_index_suffix_equals_deterministic_serialisation(index: int) -> None:
    r = record()
    placed = audit_pb2.AuditRecord()
    placed.CopyFrom(r)
    placed.log_index = index
    expected = placed.SerializeToString(deterministic=True)
    assert r.SerializeToString(deterministic=True) + records.index_suffix(index) == expected
    assert records.leaf_bytes(r, index) == expected


def test_proofs_from_the_store_match_the_reference(db_url: str) -> None:
    log = AuditLog(migrated(db_url))
    for _ in range(6):
        log.append_many([record() for _ in range(13)])
    datas = [d for _, _, d in _stored(log) if d is not None]
    size = len(datas)
    for n in (1, 2, 15, 16, 17, 64, 65, size):
        assert log.root_at(n) == reference_root(datas[:n])
    root = reference_root(datas)
    for i in (0, 1, 15, 16, 31, 63, 64, size - 1):
        proof = log.inclusion_proof(i, size)
        merkle.verify_inclusion(merkle.leaf_hash(datas[i]), i, size, proof, root)
    for m in (1, 7, 16, 32, 33, 64, size):
        proof = log.consistency_proof(m, size)
        merkle.verify_consistency(m, size, reference_root(datas[:m]), root, proof)
    with pytest.raises(merkle.ProofError, match="beyond the log's size"):
        log.inclusion_proof(0, size + 1)
    log.close()


def test_subtree_cache_holds_every_fourth_level(db_url: str) -> None:
    log = AuditLog(migrated(db_url))
    log.append_many([record() for _ in range(300)])
    with log.engine.connect() as conn:
        levels = dict(
            conn.execute(
                sa.select(tables.subtree.c.level, sa.func.count()).group_by(tables.subtree.c.level)
            ).all()
        )
    assert levels == {4: 300 // 16, 8: 1}
    log.close()


def test_erasure_keeps_hashes_root_and_proofs(db_url: str) -> None:
    log = AuditLog(migrated(db_url), default_retention=timedelta(days=365))
    old = record(start_seconds=1_600_000_000)
    subject = old.data_subject_id
    log.append_many([old, record(), record()])
    log.append_sync(record(), retain_until=datetime(2000, 1, 1, tzinfo=UTC))
    head = log.head()
    proof_before = log.inclusion_proof(0, head.size)
    erased = log.erase_expired(datetime(2025, 1, 1, tzinfo=UTC))
    assert erased == 2
    rows = _stored(log)
    assert rows[0][2] is None and rows[3][2] is None
    assert rows[1][2] is not None
    with log.engine.connect() as conn:
        left = conn.execute(
            sa.select(sa.func.count())
            .select_from(tables.leaf)
            .where(tables.leaf.c.data_subject_id == subject)
        ).scalar_one()
    assert left == 0
    assert log.head() == head
    assert log.inclusion_proof(0, head.size) == proof_before
    merkle.verify_inclusion(rows[0][1], 0, head.size, proof_before, head.root)
    assert log.erase_expired(datetime(2025, 1, 1, tzinfo=UTC)) == 0
    log.close()
