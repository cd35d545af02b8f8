"""Checkpoint signing, witnessing with compare-and-swap, cosignature collection and quorum."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest
import sqlalchemy as sa

from gateway.audit import notes, tables
from gateway.audit.checkpoint import CheckpointRefusedError
from gateway.audit.witness import (
    BadProofError,
    BadRequestError,
    ConflictError,
    UnknownLogError,
    Witness,
)
from tests.support.audit import ORIGIN, migrated, node, record


def test_checkpoints_are_due_every_n_records(db_url: str) -> None:
    n = node(db_url, every_records=10)
    assert not n.checkpointer.due()
    n.log.append_many([record() for _ in range(4)])
    assert n.checkpointer.due(), "the first records are due at once"
    first = n.checkpointer.sign()
    assert first.size == 4
    n.log.append_many([record() for _ in range(9)])
    assert not n.checkpointer.due()
    n.log.append_sync(record())
    cp = n.checkpointer.maybe_sign()
    assert cp is not None and cp.size == 14
    assert n.checkpointer.maybe_sign() is None
    checkpoint, _ = notes.open_checkpoint(cp.note, n.signer.verifier())
    assert (checkpoint.size, checkpoint.root) == (14, n.log.head().root)
    n.log.close()


def test_checkpoints_are_due_after_t_seconds(db_url: str) -> None:
    now = [1_000.0]
    n = node(db_url, every_records=1000)
    n.checkpointer.clock = lambda: now[0]
    n.checkpointer.every_seconds = 30
    n.log.append_sync(record())
    n.checkpointer.sign()
    n.log.append_sync(record())
    now[0] += 29
    assert not n.checkpointer.due()
    now[0] += 2
    assert n.checkpointer.due()
    n.log.close()


@pytest.mark.parametrize("tamper", ["head", "subtree"])
def test_never_signs_a_head_inconsistent_with_the_last_checkpoint(db_url: str, tamper: str) -> None:
    n = node(db_url)
    n.log.append_many([record() for _ in range(20)])
    n.checkpointer.sign()
    n.log.append_many([record() for _ in range(5)])
    with n.log.engine.begin() as conn:
        if tamper == "head":
            # Another history: the head's root no longer follows from the stored tree.
            conn.execute(tables.head.update().values(root=b"\x07" * 32))
        else:
            conn.execute(
                tables.subtree.update()
                .where(tables.subtree.c.level == 4, tables.subtree.c.idx == 0)
                .values(hash=b"\x07" * 32)
            )
    with pytest.raises(CheckpointRefusedError, match="size 25"):
        n.checkpointer.sign()
    assert n.checkpointer.latest().size == 20  # type: ignore[union-attr]
    n.log.close()


def test_witness_cosigns_consistent_checkpoints_and_the_log_reaches_quorum(
    db_url: str, tmp_path: Path
) -> None:
    n = node(db_url)
    # Each witness is another node with its own database.
    engines = [migrated(db_url), migrated(f"sqlite:///{tmp_path / 'witness.db'}")]
    witnesses = [
        Witness(engine, s, {ORIGIN: n.signer.verifier()})
        for engine, s in zip(engines, n.witness_signers, strict=True)
    ]
    n.log.append_many([record() for _ in range(7)])
    first = n.checkpointer.sign()
    for w in witnesses:
        name = w.signer.name
        old = n.checkpointer.last_cosigned_size(name)
        request = n.checkpointer.witness_request(first, old)
        line = w.add_checkpoint(
            request.checkpoint, request.old_size, list(request.consistency_proof), ORIGIN
        )
        assert line.startswith(f"\u2014 {name} ".encode())
        n.checkpointer.add_cosignature(first.size, line)
    latest = n.checkpointer.latest()
    assert latest is not None and n.checkpointer.is_final(latest)
    proto = n.checkpointer.to_proto(latest)
    assert proto.final and proto.cosignatures == 2 and proto.size == 7
    n.log.append_many([record() for _ in range(9)])
    second = n.checkpointer.sign()
    assert n.checkpointer.latest_final().size == 7  # type: ignore[union-attr]
    w = witnesses[0]
    request = n.checkpointer.witness_request(
        second, n.checkpointer.last_cosigned_size(w.signer.name)
    )
    assert request.old_size == 7
    line = w.add_checkpoint(request.checkpoint, 7, list(request.consistency_proof), ORIGIN)
    assert n.checkpointer.add_cosignature(second.size, line) == 1
    assert w.state(ORIGIN)[0] == 16
    assert n.checkpointer.latest_final().size == 7  # type: ignore[union-attr]
    n.log.close()


def test_witness_refusals(db_url: str) -> None:
    n = node(db_url)
    wsigner = n.witness_signers[0]
    witness = Witness(migrated(db_url), wsigner, {ORIGIN: n.signer.verifier()})
    n.log.append_many([record() for _ in range(8)])
    cp8 = n.checkpointer.sign()
    witness.add_checkpoint(cp8.note, 0, [], ORIGIN)
    n.log.append_many([record() for _ in range(5)])
    cp13 = n.checkpointer.sign()
    proof = n.log.consistency_proof(8, 13)
    with pytest.raises(ConflictError, match="holds size 8") as conflict:
        witness.add_checkpoint(cp13.note, 0, [], ORIGIN)
    assert conflict.value.current_size == 8
    with pytest.raises(BadProofError, match="consistency proof from 8 fails"):
        witness.add_checkpoint(cp13.note, 8, [bytes(32)] * len(proof), ORIGIN)
    with pytest.raises(UnknownLogError, match="may not submit the log of another node"):
        witness.add_checkpoint(cp13.note, 8, proof, "zvh-elders")
    forged = cp13.note.replace(b"\n13\n", b"\n14\n")
    with pytest.raises(BadRequestError, match="does not verify"):
        witness.add_checkpoint(forged, 8, proof, ORIGIN)
    stranger = notes.sign_checkpoint(
        notes.Checkpoint("zvh-elders", 1, bytes(32)), notes.Signer.generate("zvh-elders")
    )
    with pytest.raises(UnknownLogError, match="not a log this node witnesses"):
        witness.add_checkpoint(stranger, 0, [])
    with pytest.raises(BadRequestError, match="malformed"):
        witness.add_checkpoint(b"garbage", 0, [])
    assert witness.state(ORIGIN)[0] == 8, "a refused request moved the witness state"
    witness.add_checkpoint(cp13.note, 8, proof, ORIGIN)
    assert witness.state(ORIGIN) == (13, cp13.root)
    n.log.close()


def test_witness_compare_and_swap_lets_one_of_two_racers_win(db_url: str) -> None:
    n = node(db_url)
    n.log.append_many([record() for _ in range(4)])
    cp4 = n.checkpointer.sign()
    engine = migrated(db_url)
    signer = n.witness_signers[0]
    witnesses = [Witness(engine, signer, {ORIGIN: n.signer.verifier()}) for _ in range(2)]
    witnesses[0].add_checkpoint(cp4.note, 0, [], ORIGIN)
    n.log.append_many([record() for _ in range(3)])
    cp7 = n.checkpointer.sign()
    proof = n.log.consistency_proof(4, 7)
    outcomes: list[str] = []
    barrier = threading.Barrier(2)

    def race(w: Witness) -> None:
        barrier.wait()
        for _ in range(20):
            try:
                w.add_checkpoint(cp7.note, 4, proof, ORIGIN)
                outcomes.append("won")
            except ConflictError as exc:
                outcomes.append(f"conflict {exc.current_size}")

    threads = [threading.Thread(target=race, args=(w,)) for w in witnesses]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert outcomes.count("won") == 1
    assert outcomes.count("conflict 7") == 39
    with engine.connect() as conn:
        rows = conn.execute(sa.select(tables.witness_state)).all()
    assert len(rows) == 1 and rows[0].size == 7
    n.log.close()


def test_log_refuses_cosignatures_it_cannot_check(db_url: str) -> None:
    n = node(db_url)
    n.log.append_many([record() for _ in range(3)])
    cp = n.checkpointer.sign()
    text = notes.parse_note(cp.note).text
    stranger = notes.Signer.generate("zvh-stranger", notes.COSIGNATURE_V1)
    with pytest.raises(notes.NoteError, match="not a configured witness"):
        n.checkpointer.add_cosignature(3, notes.cosign(text, stranger, 1))
    line = notes.cosign(text.replace(b"\n3\n", b"\n4\n"), n.witness_signers[0], 1)
    with pytest.raises(notes.NoteError, match="does not verify"):
        n.checkpointer.add_cosignature(3, line)
    with pytest.raises(notes.NoteError, match="no checkpoint at size 99"):
        n.checkpointer.add_cosignature(99, line)
    assert n.checkpointer.latest().cosignatures == ()  # type: ignore[union-attr]
    n.log.close()


async def test_checkpointer_task_signs_as_records_arrive(db_url: str) -> None:
    n = node(db_url, every_records=5)
    stop = asyncio.Event()
    task = asyncio.create_task(n.checkpointer.run(stop, poll_seconds=0.02))
    for _ in range(3):
        await asyncio.gather(*(n.log.append(record()) for _ in range(5)))
        for _ in range(200):
            latest = n.checkpointer.latest()
            if latest is not None and latest.size == n.log.head().size:
                break
            await asyncio.sleep(0.01)
    stop.set()
    await asyncio.wait_for(task, 5)
    latest = n.checkpointer.latest()
    assert latest is not None and latest.size == 15
    checkpoint, _ = notes.open_checkpoint(latest.note, n.signer.verifier())
    assert checkpoint.root == n.log.head().root
    n.log.close()
