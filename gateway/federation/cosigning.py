"""Asking the peer nodes that witness this node to cosign its newest checkpoint.

One round every :data:`WITNESS_INTERVAL_SECONDS`: take up key changes from
the peer list (the signed directory may have rotated a witness key), then
send each witness the newest checkpoint with a consistency proof from the
size it last cosigned. A witness that saw a size we never got its
cosignature for says so in its refusal, and the proof starts from there.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable
from typing import TYPE_CHECKING, cast

import grpc

from gateway.audit import notes
from gateway.audit.checkpoint import Checkpointer
from gateway.audit.witness import WITNESS_SIZE_KEY
from gateway.federation.client import PeerClient
from gateway.federation.directory import Peer
from gateway.federation.witnesses import WitnessRoster
from gateway.logging import get_logger
from gateway.observability import metrics

if TYPE_CHECKING:
    from schakel.v1.federation_pb2_grpc import FederationServiceAsyncStub

log = get_logger("cosigning")

WITNESS_INTERVAL_SECONDS = 2.0
WITNESS_DEADLINE_SECONDS = 5.0


async def run(
    checkpointer: Checkpointer, roster: WitnessRoster, peers: PeerClient, stop: asyncio.Event
) -> None:
    """Until ``stop``: each round take up key changes from the peer list, then ask every witness."""

    async def ask(peer: Peer, stub: FederationServiceAsyncStub, timeout: float) -> None:
        await ask_witness(checkpointer, peer.node_id, stub, timeout)

    while not stop.is_set():
        try:
            keys = await asyncio.to_thread(roster.refresh)
            if keys.witnesses:
                await peers.fan_out(
                    "AddCheckpoint",
                    ask,
                    deadline=WITNESS_DEADLINE_SECONDS,
                    only=list(keys.witnesses),
                    idempotent=False,
                )
        except Exception as exc:  # a failed round is retried at the next interval
            log.error("witness_round_failed", error=type(exc).__name__)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), WITNESS_INTERVAL_SECONDS)


async def ask_witness(
    checkpointer: Checkpointer, witness: str, stub: FederationServiceAsyncStub, timeout: float
) -> None:
    """Send the newest checkpoint to the node ``witness`` if it has not cosigned it yet.

    A transcryptor asks its witnesses this way too
    (:mod:`gateway.transcryptor.witnessing`).
    """
    latest = await asyncio.to_thread(checkpointer.latest)
    if latest is None:
        return
    old_size = await asyncio.to_thread(checkpointer.last_cosigned_size, witness)
    if old_size >= latest.size:
        return
    for _attempt in range(2):
        request = await asyncio.to_thread(checkpointer.witness_request, latest, old_size)
        try:
            reply = await stub.AddCheckpoint(request, timeout=timeout)
        except grpc.aio.AioRpcError as exc:
            held = _held_size(exc)
            if held is not None and held != old_size:
                # The witness saw a size we never got its cosignature for
                # (e.g. the reply was lost): prove consistency from there.
                old_size = held
                continue
            log.warning("witness_unavailable", peer=witness, code=exc.code().name, size=latest.size)
            return
        try:
            count = await asyncio.to_thread(
                checkpointer.add_cosignature, latest.size, reply.cosignature
            )
        except notes.NoteError as exc:
            log.error("witness_cosignature_refused", peer=witness, reason=str(exc))
            return
        metrics.cosigned(witness)
        log.info("checkpoint_cosigned", peer=witness, size=latest.size, cosignatures=count)
        return


def _held_size(error: grpc.aio.AioRpcError) -> int | None:
    """The witness's size from a FAILED_PRECONDITION answer, if it is one."""
    if error.code() is not grpc.StatusCode.FAILED_PRECONDITION:
        return None
    # grpc-stubs types trailing metadata as opaque items; at run time they are pairs.
    pairs = cast("Iterable[tuple[str, str | bytes]]", error.trailing_metadata() or ())
    for key, value in pairs:
        if key == WITNESS_SIZE_KEY:
            text = value.decode() if isinstance(value, bytes) else value
            return int(text) if text.isdigit() else None
    return None
