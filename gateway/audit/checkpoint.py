"""The log side of checkpoints: signing every N records or T seconds, cosignature collection.

A checkpoint is signed only after the new head is proven consistent with the
last signed checkpoint (a consistency proof from the stored hashes, checked
against both signed roots), so the node never signs two views of history.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import sqlalchemy as sa
from schakel.v1 import audit_pb2, federation_pb2
from sqlalchemy.exc import IntegrityError

from gateway.audit import merkle, notes, tables
from gateway.audit.store import AuditLog
from gateway.audit.tree import read_head
from gateway.logging import get_logger

_log = get_logger("audit.checkpoint")


class CheckpointRefusedError(Exception):
    """The node refused to sign: the head is not consistent with the last checkpoint."""


@dataclass(frozen=True)
class StoredCheckpoint:
    """A signed checkpoint as stored, with its cosignature lines."""

    size: int
    root: bytes
    note: bytes
    signed_us: int
    cosignatures: tuple[bytes, ...]

    def full_note(self) -> bytes:
        """The note with every cosignature appended."""
        return self.note + b"".join(self.cosignatures)


class Checkpoints:
    """Read side of a log's checkpoints, and the cosignatures its witnesses return.

    ``witnesses`` are the pinned cosignature/v1 keys of the configured peer
    nodes; a checkpoint is final once ``quorum`` of them cosigned it. The
    node replaces them with :meth:`set_witnesses` when its directory changes.
    """

    def __init__(
        self, log: AuditLog, *, witnesses: Sequence[notes.Verifier] = (), quorum: int = 0
    ) -> None:
        if not 0 <= quorum <= len(witnesses):
            raise ValueError(f"quorum {quorum} is not between 0 and {len(witnesses)} witnesses")
        self.log = log
        self.witnesses = {w.name: w for w in witnesses}
        self.quorum = quorum

    def set_witnesses(self, witnesses: Sequence[notes.Verifier]) -> None:
        """Put ``witnesses`` in force: cosignatures are accepted from them only from now on.

        Unlike the constructor this does not refuse fewer witnesses than the
        quorum: a directory may drop a witness while the node runs, and its
        checkpoints then stay unfinal until one is listed again.
        """
        # One assignment, so a concurrent add_cosignature sees the old or the new set.
        self.witnesses = {w.name: w for w in witnesses}

    # -- signing -----------------------------------------------------------

    def latest(self) -> StoredCheckpoint | None:
        """The newest signed checkpoint, or None before the first."""
        return self._load(None)

    def get(self, size: int) -> StoredCheckpoint | None:
        """The checkpoint at ``size``, if one was signed."""
        return self._load(size)

    def _load(self, size: int | None) -> StoredCheckpoint | None:
        cp = tables.checkpoint
        query = sa.select(cp.c.size, cp.c.root, cp.c.note, cp.c.signed_us)
        query = (
            query.order_by(cp.c.size.desc()).limit(1)
            if size is None
            else query.where(cp.c.size == size)
        )
        with self.log.engine.connect() as conn:
            row = conn.execute(query).first()
            if row is None:
                return None
            cos = tables.cosignature
            lines = conn.execute(
                sa.select(cos.c.line).where(cos.c.size == row.size).order_by(cos.c.witness)
            ).scalars()
            return StoredCheckpoint(
                int(row.size),
                bytes(row.root),
                bytes(row.note),
                int(row.signed_us),
                tuple(bytes(x) for x in lines),
            )

    # -- witnessing, the log side -----------------------------------------

    def last_cosigned_size(self, witness: str) -> int:
        """The largest size ``witness`` cosigned, 0 if none (the old_size to send it)."""
        cos = tables.cosignature
        with self.log.engine.connect() as conn:
            value = conn.execute(
                sa.select(sa.func.max(cos.c.size)).where(cos.c.witness == witness)
            ).scalar()
        return int(value or 0)

    def witness_request(
        self, checkpoint: StoredCheckpoint, old_size: int
    ) -> federation_pb2.AddCheckpointRequest:
        """The AddCheckpoint request asking a witness that last saw ``old_size`` to cosign."""
        return federation_pb2.AddCheckpointRequest(
            old_size=old_size,
            consistency_proof=self.log.consistency_proof(old_size, checkpoint.size),
            checkpoint=checkpoint.note,
        )

    def add_cosignature(self, size: int, line: bytes) -> int:
        """Check and store a witness's cosignature line for the checkpoint at ``size``.

        Returns the number of cosignatures that checkpoint now has. Raises
        :class:`notes.NoteError` for an unknown witness or a bad signature.
        """
        stored = self.get(size)
        if stored is None:
            raise notes.NoteError(f"no checkpoint at size {size}")
        sig = notes.parse_signature_line(line)
        verifier = self.witnesses.get(sig.name)
        if verifier is None:
            raise notes.NoteError(f"{sig.name!r} is not a configured witness")
        notes.verify_cosignature(notes.parse_note(stored.note).text, sig, verifier)
        cos = tables.cosignature
        with self.log.engine.begin() as conn:
            conn.execute(cos.delete().where(cos.c.size == size, cos.c.witness == sig.name))
            conn.execute(cos.insert().values(size=size, witness=sig.name, line=sig.line))
            count = conn.execute(
                sa.select(sa.func.count()).select_from(cos).where(cos.c.size == size)
            ).scalar_one()
        return int(count)

    def is_final(self, checkpoint: StoredCheckpoint) -> bool:
        """True once ``quorum`` configured witnesses cosigned ``checkpoint``."""
        return len(checkpoint.cosignatures) >= self.quorum

    def latest_final(self) -> StoredCheckpoint | None:
        """The newest checkpoint with a quorum of cosignatures."""
        cp, cos = tables.checkpoint, tables.cosignature
        counted = (
            sa.select(cp.c.size)
            .outerjoin(cos, cos.c.size == cp.c.size)
            .group_by(cp.c.size)
            .having(sa.func.count(cos.c.witness) >= self.quorum)
            .order_by(cp.c.size.desc())
            .limit(1)
        )
        with self.log.engine.connect() as conn:
            size = conn.execute(counted).scalar()
        return None if size is None else self.get(int(size))

    def to_proto(self, checkpoint: StoredCheckpoint) -> audit_pb2.SignedCheckpoint:
        """The checkpoint as the API's SignedCheckpoint."""
        return audit_pb2.SignedCheckpoint(
            note=checkpoint.full_note(),
            size=checkpoint.size,
            root=checkpoint.root,
            cosignatures=len(checkpoint.cosignatures),
            final=self.is_final(checkpoint),
        )


class Checkpointer(Checkpoints):
    """Signs the log's checkpoints every ``every_records`` records or ``every_seconds``."""

    def __init__(
        self,
        log: AuditLog,
        signer: notes.Signer,
        *,
        every_records: int = 1000,
        every_seconds: float = 60.0,
        witnesses: Sequence[notes.Verifier] = (),
        quorum: int = 0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(log, witnesses=witnesses, quorum=quorum)
        if every_records < 1 or every_seconds <= 0:
            raise ValueError("every_records must be >= 1 and every_seconds > 0")
        if signer.sig_type != notes.ED25519:
            raise ValueError("the log signs checkpoints with a plain Ed25519 (0x01) key")
        self.signer = signer
        self.origin = signer.name
        self.every_records = every_records
        self.every_seconds = every_seconds
        self.clock = clock

    def due(self) -> bool:
        """True when N records or T seconds have passed since the last checkpoint."""
        head = self.log.head()
        last = self.latest()
        if last is None:
            return head.size > 0
        if head.size <= last.size:
            return False
        elapsed = self.clock() - last.signed_us / 1e6
        return head.size - last.size >= self.every_records or elapsed >= self.every_seconds

    def sign(self) -> StoredCheckpoint:
        """Sign the current head after proving it extends the last checkpoint.

        Raises :class:`CheckpointRefusedError` when the stored tree does not extend
        the last signed view; nothing is signed then.
        """
        last = self.latest()
        with self.log.engine.connect() as conn:
            head = read_head(conn)
        if last is not None:
            if head.size < last.size:
                raise CheckpointRefusedError(
                    f"head size {head.size} is below the last checkpoint size {last.size}"
                )
            if head.size == last.size:
                if head.root != last.root:
                    raise CheckpointRefusedError(
                        f"head root differs from the checkpoint at {head.size}"
                    )
                return last
        try:
            if head.size and self.log.root_at(head.size) != head.root:
                raise CheckpointRefusedError(
                    f"not signing size {head.size}: the stored subtree hashes do not"
                    " reproduce the head root"
                )
            if last is not None:
                proof = self.log.consistency_proof(last.size, head.size)
                merkle.verify_consistency(last.size, head.size, last.root, head.root, proof)
        except merkle.ProofError as exc:
            _log.error("checkpoint refused", size=head.size, reason=str(exc))
            raise CheckpointRefusedError(f"not signing size {head.size}: {exc}") from exc
        note = notes.sign_checkpoint(
            notes.Checkpoint(self.origin, head.size, head.root), self.signer
        )
        now_us = int(self.clock() * 1_000_000)
        try:
            with self.log.engine.begin() as conn:
                conn.execute(
                    tables.checkpoint.insert().values(
                        size=head.size, root=head.root, note=note, signed_us=now_us
                    )
                )
        except IntegrityError:
            # Another node process signed this very size (same tree, same
            # deterministic Ed25519 signature); its row stands.
            existing = self.get(head.size)
            assert existing is not None
            return existing
        _log.info("checkpoint signed", size=head.size)
        return StoredCheckpoint(head.size, head.root, note, now_us, ())

    def maybe_sign(self) -> StoredCheckpoint | None:
        """Sign when :meth:`due`; returns the new checkpoint or None."""
        return self.sign() if self.due() else None

    async def run(self, stop: asyncio.Event, poll_seconds: float = 0.5) -> None:
        """Sign checkpoints as they fall due until ``stop`` is set."""
        while not stop.is_set():
            try:
                await asyncio.to_thread(self.maybe_sign)
            except CheckpointRefusedError:
                _log.error("checkpointing halted: the log does not extend its last checkpoint")
                raise
            except sa.exc.SQLAlchemyError as exc:
                _log.warning("checkpoint attempt failed", error=type(exc).__name__)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), poll_seconds)
