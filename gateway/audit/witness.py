"""Witnessing peer logs (C2SP tlog-witness add-checkpoint).

A node witnesses the audit logs of its peer nodes: for each peer's origin it
remembers the newest (size, root) it cosigned. A new checkpoint is cosigned
only when it is signed by the peer's pinned key, the caller's old_size is the
size the witness holds, and the consistency proof from that size holds. The
stored state moves with a compare-and-swap, so two concurrent requests can
never both advance it from the same size.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence

import grpc
import sqlalchemy as sa
from schakel.v1 import federation_pb2
from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError

from gateway import errors
from gateway.audit import merkle, notes, tables
from gateway.errors import quote
from gateway.logging import get_logger

_log = get_logger("audit.witness")


class WitnessError(errors.SchakelError):
    """The witness refused to cosign; the message says why."""


class UnknownLogError(WitnessError, errors.DeniedError):
    """The checkpoint's origin is not a pinned peer log, or not the caller's."""


class BadRequestError(WitnessError, errors.InvalidInputError):
    """The request is malformed, or the checkpoint's signature does not verify."""


class BadProofError(WitnessError, errors.InvalidInputError):
    """The consistency proof does not hold."""


class ConflictError(WitnessError, errors.WrongStateError):
    """old_size is not the size this witness holds for the log (answered FAILED_PRECONDITION)."""

    def __init__(self, current_size: int) -> None:
        super().__init__(f"old_size does not match; this witness holds size {current_size}")
        self.current_size = current_size


class Witness:
    """Cosigns peer checkpoints with this node's cosignature/v1 key."""

    def __init__(
        self,
        engine: Engine,
        signer: notes.Signer,
        logs: Mapping[str, notes.Verifier],
        clock: Callable[[], float] = time.time,
    ) -> None:
        if signer.sig_type != notes.COSIGNATURE_V1:
            raise ValueError("a witness cosigns with a cosignature/v1 (0x04) key")
        self.engine = engine
        self.signer = signer
        self.logs: dict[str, notes.Verifier] = {}
        self.set_logs(logs)
        self.clock = clock

    def set_logs(self, logs: Mapping[str, notes.Verifier]) -> None:
        """Witness the logs of ``logs`` (origin -> checkpoint key) from now on.

        Raises ValueError, changing nothing, when a key is not an Ed25519 key
        named after its origin.
        """
        for origin, verifier in logs.items():
            if verifier.name != origin or verifier.sig_type != notes.ED25519:
                raise ValueError(f"log key for {origin!r} must be an Ed25519 key named {origin!r}")
        # One assignment, so a concurrent add_checkpoint sees the old or the new set.
        self.logs = dict(logs)

    def state(self, origin: str) -> tuple[int, bytes]:
        """The (size, root) this witness last cosigned for ``origin``; (0, empty root) if none."""
        ws = tables.witness_state
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(ws.c.size, ws.c.root).where(ws.c.origin == origin)).first()
        return (0, merkle.EMPTY_ROOT) if row is None else (int(row.size), bytes(row.root))

    def add_checkpoint(
        self,
        note: bytes,
        old_size: int,
        proof: Sequence[bytes],
        caller_origin: str | None = None,
    ) -> bytes:
        """Check a peer checkpoint and return this witness's cosignature line over it.

        ``caller_origin`` is the node id from the caller's verified
        certificate; a node may only submit checkpoints of its own log.
        """
        try:
            parsed = notes.parse_note(note)
            checkpoint = notes.Checkpoint.parse(parsed.text)
        except notes.NoteError as exc:
            # A parse error may name a signer from the note, so it is quoted, cut short.
            raise BadRequestError(f"checkpoint is malformed: {quote(exc, 200)}") from exc
        verifier = self.logs.get(checkpoint.origin)
        if verifier is None:
            raise UnknownLogError(
                f"origin {quote(checkpoint.origin)} is not a log this node witnesses"
            )
        if caller_origin is not None and caller_origin != checkpoint.origin:
            raise UnknownLogError(
                f"caller {quote(caller_origin)} may not submit the log of another node"
            )
        try:
            notes.verify_note(parsed, verifier)
        except notes.NoteError as exc:
            raise BadRequestError(str(exc)) from exc
        if old_size > checkpoint.size:
            raise BadRequestError(f"old_size {old_size} is larger than the checkpoint size")
        held_size, held_root = self.state(checkpoint.origin)
        if old_size != held_size:
            raise ConflictError(held_size)
        try:
            merkle.verify_consistency(
                old_size, checkpoint.size, held_root, checkpoint.root, list(proof)
            )
        except merkle.ProofError as exc:
            raise BadProofError(f"consistency proof from {old_size} fails: {exc}") from exc
        self._advance(checkpoint, held_size, held_root)
        _log.info("checkpoint cosigned", origin=checkpoint.origin, size=checkpoint.size)
        return notes.cosign(parsed.text, self.signer, int(self.clock()))

    def _advance(self, checkpoint: notes.Checkpoint, old_size: int, old_root: bytes) -> None:
        ws = tables.witness_state
        now_us = int(self.clock() * 1_000_000)
        try:
            with self.engine.begin() as conn:
                if old_size == 0:
                    existing = conn.execute(
                        sa.select(ws.c.size).where(ws.c.origin == checkpoint.origin)
                    ).first()
                    if existing is None:
                        conn.execute(
                            ws.insert().values(
                                origin=checkpoint.origin,
                                size=checkpoint.size,
                                root=checkpoint.root,
                                updated_us=now_us,
                            )
                        )
                        return
                moved = conn.execute(
                    ws.update()
                    .where(
                        ws.c.origin == checkpoint.origin,
                        ws.c.size == old_size,
                        ws.c.root == old_root,
                    )
                    .values(size=checkpoint.size, root=checkpoint.root, updated_us=now_us)
                )
                if moved.rowcount != 1:
                    raise ConflictError(self.state(checkpoint.origin)[0])
        except IntegrityError as exc:
            raise ConflictError(self.state(checkpoint.origin)[0]) from exc


WITNESS_SIZE_KEY = "schakel-witness-size"
"""Trailing metadata on a witness conflict: the size the witness holds (C2SP's 409)."""


async def add_checkpoint_rpc(
    witness: Witness,
    request: federation_pb2.AddCheckpointRequest,
    context: grpc.aio.ServicerContext[
        federation_pb2.AddCheckpointRequest, federation_pb2.AddCheckpointResponse
    ],
    caller_node_id: str,
) -> federation_pb2.AddCheckpointResponse:
    """FederationService.AddCheckpoint over :class:`Witness`; a refusal raises its WitnessError.

    The node's one status mapping answers each branch: a conflict
    FAILED_PRECONDITION (the message carries the witness's size), an unknown
    or foreign log PERMISSION_DENIED, a bad proof or request INVALID_ARGUMENT.
    """
    try:
        line = await asyncio.to_thread(
            witness.add_checkpoint,
            request.checkpoint,
            request.old_size,
            list(request.consistency_proof),
            caller_node_id,
        )
    except ConflictError as exc:
        # The size also goes in trailing metadata, so the log can retry from it
        # without parsing a human-readable message.
        context.set_trailing_metadata(((WITNESS_SIZE_KEY, str(exc.current_size)),))
        raise
    return federation_pb2.AddCheckpointResponse(cosignature=line)
