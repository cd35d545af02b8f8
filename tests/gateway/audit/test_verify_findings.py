"""What verify reports beyond the chain: index columns, erased bodies, rows beyond the head."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from gateway.audit import inzage, merkle, records, tables
from gateway.audit.checkpoint import Checkpoints
from gateway.audit.verify import verify_database
from tests.support.audit import Node, node, record

SUBJECT = "ab" * 32


def _built(db_url: str) -> Node:
    n = node(db_url)
    for _ in range(4):
        n.log.append_many([record(SUBJECT if i % 4 == 0 else None) for i in range(10)])
        n.checkpointer.sign()
        n.cosign_latest()
    return n


def _update_leaf(n: Node, index: int, **values: object) -> None:
    with n.log.engine.begin() as conn:
        conn.execute(tables.leaf.update().where(tables.leaf.c.idx == index).values(**values))


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("data_subject_id", "cd" * 32),
        ("processing_activity_id", "zvh.iets-anders"),
        ("peer", "schakel://partner/zvh-haaglanden/ander"),
        ("start_us", 0),
        ("outcome", 2),
    ],
)
def test_a_rewritten_index_column_is_named_by_its_leaf(
    db_url: str, column: str, value: object
) -> None:
    n = _built(db_url)
    _update_leaf(n, 12, **{column: value})
    report = verify_database(n.log.engine, n.keys)
    assert not report.ok
    assert report.first_bad_index == 12
    assert f"leaf 12: its {column} column does not match its record" in report.message
    n.log.close()


def test_an_inzage_made_incomplete_by_a_rewritten_subject_column_is_caught(db_url: str) -> None:
    n = _built(db_url)
    checkpoints = Checkpoints(n.log, witnesses=n.keys.witnesses, quorum=n.keys.quorum)
    assert len(inzage.build_report(checkpoints, SUBJECT).response.entries) == 12
    _update_leaf(n, 8, data_subject_id=None)
    assert len(inzage.build_report(checkpoints, SUBJECT).response.entries) == 11
    report = verify_database(n.log.engine, n.keys)
    assert not report.ok and report.first_bad_index == 8
    assert "data_subject_id column" in report.message
    n.log.close()


def test_verify_counts_erased_bodies(db_url: str) -> None:
    n = _built(db_url)
    _update_leaf(n, 3, retain_until_us=0)
    _update_leaf(n, 30, retain_until_us=0)
    assert n.log.erase_expired() == 2
    report = verify_database(n.log.engine, n.keys)
    assert report.ok, report.message
    assert report.erased == 2
    assert report.message.endswith("2 bodies erased (checked by their leaf hash)")
    n.log.close()


def _roll_head_back(n: Node, size: int) -> None:
    compact = merkle.CompactRange()
    with n.log.engine.begin() as conn:
        hashes = conn.execute(
            sa.select(tables.leaf.c.leaf_hash).where(tables.leaf.c.idx < size).order_by("idx")
        ).scalars()
        for digest in hashes:
            compact.append(bytes(digest))
        conn.execute(
            tables.head.update().values(size=size, root=compact.root(), compact=compact.packed())
        )


def test_a_head_only_rollback_is_named(db_url: str) -> None:
    n = _built(db_url)
    _roll_head_back(n, 30)
    report = verify_database(n.log.engine, n.keys)
    assert not report.ok
    assert report.first_bad_index == 30
    assert report.message == (
        "head-only rollback: the head says 30 leaves, but leaves 30..39 are still stored"
        " and match the signed checkpoint at size 40"
    )
    n.log.close()


def test_rows_beyond_the_head_are_named(db_url: str) -> None:
    n = _built(db_url)
    extra = record()
    data = records.leaf_bytes(extra, 40)
    cols = records.columns(extra)
    with n.log.engine.begin() as conn:
        conn.execute(
            tables.leaf.insert().values(
                idx=40,
                leaf_hash=merkle.leaf_hash(data),
                data=data,
                data_subject_id=cols.data_subject_id,
                processing_activity_id=cols.processing_activity_id,
                peer=cols.peer,
                start_us=cols.start_us,
                outcome=cols.outcome,
            )
        )
    report = verify_database(n.log.engine, n.keys)
    assert not report.ok
    assert report.first_bad_index == 40
    assert "leaves 40..40 are stored beyond the head (size 40)" in report.message
    n.log.close()


def test_a_deleted_tail_with_its_head_says_so(db_url: str) -> None:
    n = _built(db_url)
    n.log.append_many([record() for _ in range(5)])
    with n.log.engine.begin() as conn:
        conn.execute(tables.leaf.delete().where(tables.leaf.c.idx >= 42))
    report = verify_database(n.log.engine, n.keys)
    assert not report.ok and report.first_bad_index == 42
    assert "the head says 45 leaves but only 42 are stored (leaves 42..44 deleted" in (
        report.message
    )
    n.log.close()
