"""Offline verification: every single change to the stored log is found and located."""

from __future__ import annotations

import base64
import io
import json
import threading
from pathlib import Path

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.audit import merkle, notes, records, tables
from gateway.audit.export import export
from gateway.audit.verify import (
    BundleError,
    Keys,
    LeafRow,
    verify_bundle,
    verify_database,
    verify_leaves,
)
from tests.support.audit import ORIGIN, Node, node, record


def _built(db_url: str, size: int = 40, checkpoint_every: int = 10) -> Node:
    n = node(db_url)
    for start in range(0, size, checkpoint_every):
        n.log.append_many([record() for _ in range(min(checkpoint_every, size - start))])
        n.checkpointer.sign()
        n.cosign_latest()
    return n


def _update_leaf(n: Node, index: int, **values: object) -> None:
    with n.log.engine.begin() as conn:
        conn.execute(tables.leaf.update().where(tables.leaf.c.idx == index).values(**values))


def _data(n: Node, index: int) -> bytes:
    with n.log.engine.connect() as conn:
        value = conn.execute(
            sa.select(tables.leaf.c.data).where(tables.leaf.c.idx == index)
        ).scalar_one()
    return bytes(value)


def test_clean_log_verifies_with_quorum(db_url: str) -> None:
    n = _built(db_url)
    report = verify_database(n.log.engine, n.keys)
    assert report.ok, report.message
    assert (report.size, report.checkpoints, report.final_checkpoints) == (40, 4, 4)
    assert report.root == n.log.head().root
    assert report.to_proto().ok
    n.log.close()


def test_edited_record_is_named_exactly(db_url: str) -> None:
    n = _built(db_url)
    rec = records.decode(_data(n, 17))
    rec.processing_activity_id = "zvh.iets-anders"
    _update_leaf(n, 17, data=rec.SerializeToString(deterministic=True))
    report = verify_database(n.log.engine, n.keys)
    assert not report.ok
    assert report.first_bad_index == 17
    assert "leaf 17: its bytes do not match its leaf hash" in report.message
    assert report.to_proto().first_bad_index == 17
    n.log.close()


def test_edited_record_with_rehash_is_caught_by_the_signed_root(db_url: str) -> None:
    n = _built(db_url)
    rec = records.decode(_data(n, 23))
    rec.decision.outcome = 2  # type: ignore[assignment]
    data = rec.SerializeToString(deterministic=True)
    _update_leaf(n, 23, data=data, leaf_hash=merkle.leaf_hash(data))
    report = verify_database(n.log.engine, n.keys)
    assert not report.ok
    assert "checkpoint at size 30 does not match the stored leaves: leaves 20..29" in report.message
    assert report.first_bad_index == 20
    n.log.close()


def test_deleted_record_is_named(db_url: str) -> None:
    n = _built(db_url)
    with n.log.engine.begin() as conn:
        conn.execute(tables.leaf.delete().where(tables.leaf.c.idx == 12))
    report = verify_database(n.log.engine, n.keys)
    assert not report.ok and report.first_bad_index == 12
    assert "leaf 12 is missing" in report.message
    n.log.close()


def test_deleted_tail_is_named(db_url: str) -> None:
    n = _built(db_url)
    with n.log.engine.begin() as conn:
        conn.execute(tables.leaf.delete().where(tables.leaf.c.idx >= 35))
    report = verify_database(n.log.engine, n.keys)
    assert not report.ok and report.first_bad_index == 35
    assert "checkpoint at size 40 covers more than the 35 stored leaves" in report.message
    n.log.close()


def test_reordered_records_are_named(db_url: str) -> None:
    n = _built(db_url)
    with n.log.engine.connect() as conn:
        rows = {
            int(r.idx): (bytes(r.leaf_hash), bytes(r.data))
            for r in conn.execute(sa.select(tables.leaf).where(tables.leaf.c.idx.in_([5, 9])))
        }
    _update_leaf(n, 5, leaf_hash=rows[9][0], data=rows[9][1])
    _update_leaf(n, 9, leaf_hash=rows[5][0], data=rows[5][1])
    report = verify_database(n.log.engine, n.keys)
    assert not report.ok and report.first_bad_index == 5
    assert "leaf 5: holds the record written at position 9" in report.message
    n.log.close()


def test_inserted_record_is_named(db_url: str) -> None:
    n = _built(db_url)
    with n.log.engine.begin() as conn:
        for idx in range(39, 7, -1):
            conn.execute(tables.leaf.update().where(tables.leaf.c.idx == idx).values(idx=idx + 1))
        forged = records.leaf_bytes(record(), 8)
        conn.execute(
            tables.leaf.insert().values(
                idx=8,
                leaf_hash=merkle.leaf_hash(forged),
                data=forged,
                processing_activity_id="x",
                peer="",
                start_us=0,
                outcome=1,
            )
        )
    report = verify_database(n.log.engine, n.keys)
    assert not report.ok and report.first_bad_index == 9
    assert "leaf 9: holds the record written at position 8" in report.message
    n.log.close()


def test_forged_checkpoint_is_reported(db_url: str) -> None:
    n = _built(db_url)
    with n.log.engine.begin() as conn:
        note = conn.execute(
            sa.select(tables.checkpoint.c.note).where(tables.checkpoint.c.size == 20)
        ).scalar_one()
        forged = bytes(note).replace(b"\n20\n", b"\n21\n")
        conn.execute(
            tables.checkpoint.update().where(tables.checkpoint.c.size == 20).values(note=forged)
        )
    report = verify_database(n.log.engine, n.keys)
    assert not report.ok
    assert "forged or damaged" in report.message and "does not verify" in report.message
    n.log.close()


def test_fork_is_detected_against_a_checkpoint_seen_elsewhere(db_url: str) -> None:
    n = _built(db_url)
    # The node (or a thief of its key) signed another history for size 20,
    # and showed it to a witness; the officer brings that checkpoint along.
    other = notes.sign_checkpoint(notes.Checkpoint(ORIGIN, 20, b"\x05" * 32), n.signer)
    report = verify_database(n.log.engine, n.keys, extra_checkpoints=[other])
    assert not report.ok
    assert "fork: two validly signed checkpoints of size 20 differ" in report.message
    later = notes.sign_checkpoint(notes.Checkpoint(ORIGIN, 33, b"\x05" * 32), n.signer)
    report = verify_database(n.log.engine, n.keys, extra_checkpoints=[later])
    assert not report.ok and "checkpoint at size 33 does not match" in report.message
    n.log.close()


def test_bad_cosignature_and_missing_quorum(db_url: str) -> None:
    n = _built(db_url, size=10)
    with n.log.engine.begin() as conn:
        line = conn.execute(sa.select(tables.cosignature.c.line).limit(1)).scalar_one()
        sig = notes.parse_signature_line(bytes(line))
        broken = bytearray(sig.signature)
        broken[-1] ^= 1
        payload = base64.b64encode(sig.key_id + bytes(broken)).decode()
        conn.execute(
            tables.cosignature.update()
            .where(tables.cosignature.c.witness == sig.name)
            .values(line=f"\u2014 {sig.name} {payload}\n".encode())
        )
    report = verify_database(n.log.engine, n.keys)
    assert not report.ok and f"cosignature by {sig.name} does not verify" in report.message
    with n.log.engine.begin() as conn:
        conn.execute(tables.cosignature.delete())
    report = verify_database(n.log.engine, n.keys)
    assert report.ok and report.final_checkpoints == 0
    n.log.close()


def test_head_disagreeing_with_the_leaves_is_reported(db_url: str) -> None:
    n = _built(db_url)
    n.log.append_many([record() for _ in range(3)])
    with n.log.engine.begin() as conn:
        conn.execute(tables.head.update().values(root=b"\x01" * 32))
    report = verify_database(n.log.engine, n.keys)
    assert not report.ok and "head root does not match" in report.message
    n.log.close()


def test_erased_bodies_still_verify(db_url: str) -> None:
    n = _built(db_url)
    with n.log.engine.begin() as conn:
        conn.execute(tables.leaf.update().where(tables.leaf.c.idx < 25).values(data=None))
    report = verify_database(n.log.engine, n.keys)
    assert report.ok, report.message
    n.log.close()


def test_export_bundle_round_trip_and_tamper(db_url: str, tmp_path: Path) -> None:
    n = _built(db_url, size=25)
    n.log.append_many([record() for _ in range(2)])
    path = tmp_path / "export.jsonl"
    with path.open("w", encoding="utf-8") as out:
        assert export(n.log.engine, out) == 27
    report = verify_bundle(path, n.keys)
    assert report.ok, report.message
    assert report.warnings == ["leaves 25..26 are not yet covered by a checkpoint"]
    lines = path.read_text(encoding="utf-8").splitlines()
    entry = json.loads(lines[-5])
    assert entry["type"] == "leaf" and entry["record"]["processingActivityId"]
    data = bytearray(base64.b64decode(entry["data"]))
    data[-3] ^= 0x01
    entry["data"] = base64.b64encode(bytes(data)).decode()
    lines[-5] = json.dumps(entry)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    report = verify_bundle(path, n.keys)
    assert not report.ok and report.first_bad_index == entry["index"]
    path.write_text("not json\n", encoding="utf-8")
    with pytest.raises(BundleError, match="line 1: not JSON"):
        verify_bundle(path, n.keys)
    n.log.close()


_BASE: dict[str, object] = {}


def _base_rows(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[LeafRow], list[bytes], Keys]:
    if not _BASE:
        url = f"sqlite:///{tmp_path_factory.mktemp('prop') / 'log.db'}"
        n = _built(url, size=64, checkpoint_every=16)
        out = io.StringIO()
        export(n.log.engine, out)
        rows: list[LeafRow] = []
        notes_: list[bytes] = []
        for line in out.getvalue().splitlines():
            obj = json.loads(line)
            if obj["type"] == "checkpoint":
                notes_.append(obj["note"].encode())
            elif obj["type"] == "leaf":
                rows.append(
                    (
                        obj["index"],
                        base64.b64decode(obj["leaf_hash"]),
                        base64.b64decode(obj["data"]),
                    )
                )
        _BASE.update(rows=rows, notes=notes_, keys=n.keys)
        n.log.close()
    return _BASE["rows"], _BASE["notes"], _BASE["keys"]  # type: ignore[return-value]


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    kind=st.sampled_from(["flip", "rehash", "delete", "swap", "duplicate"]),
    position=st.integers(0, 63),
    other=st.integers(0, 63),
    byte=st.integers(0, 10_000),
)
def test_any_single_mutation_is_detected_and_located(
    tmp_path_factory: pytest.TempPathFactory, kind: str, position: int, other: int, byte: int
) -> None:
    base, checkpoint_notes, keys = _base_rows(tmp_path_factory)
    rows = list(base)
    idx, digest, data = rows[position]
    assert data is not None
    window = (position // 16) * 16
    if kind == "flip":
        mutated = bytearray(data)
        mutated[byte % len(mutated)] ^= 1 << (byte % 8)
        rows[position] = (idx, digest, bytes(mutated))
        expected = {position}
    elif kind == "rehash":
        mutated = bytearray(data)
        mutated[byte % len(mutated)] ^= 1 << (byte % 8)
        rows[position] = (idx, merkle.leaf_hash(bytes(mutated)), bytes(mutated))
        # Either the bytes no longer parse or carry another position (named
        # exactly), or only the signed root of its checkpoint window can tell.
        expected = {position, window}
    elif kind == "delete":
        del rows[position]
        expected = {position}
    elif kind == "swap":
        if other == position:
            other = (position + 1) % 64
        a, b = sorted((position, other))
        rows[a] = (a, rows[b][1], rows[b][2])
        rows[b] = (b, base[a][1], base[a][2])
        expected = {a}
    else:
        rows.insert(position + 1, rows[position])
        expected = {position + 1}
    report = verify_leaves(rows, checkpoint_notes, keys)
    assert not report.ok
    assert report.first_bad_index in expected, report.message


def test_verifying_a_log_that_keeps_growing(db_url: str) -> None:
    n = _built(db_url)
    stop = threading.Event()
    grew = threading.Event()

    def keep_appending() -> None:
        while not stop.is_set():
            n.log.append_many([record() for _ in range(20)])
            n.checkpointer.sign()
            grew.set()

    writer = threading.Thread(target=keep_appending)
    writer.start()
    try:
        reports = [verify_database(n.log.engine, n.keys) for _ in range(5)]
        # On a loaded machine the writer may not have run yet: wait for one
        # signed growth, so the last verification surely sees a larger log.
        assert grew.wait(30), "the writer appended nothing within 30 s"
        reports.append(verify_database(n.log.engine, n.keys))
    finally:
        stop.set()
        writer.join()
    assert all(r.ok for r in reports), [r.message for r in reports if not r.ok]
    assert reports[-1].size > 40
    n.log.close()
