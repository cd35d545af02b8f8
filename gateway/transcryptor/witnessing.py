"""Witnesses for a transcryptor's own audit log: federation nodes cosign its checkpoints.

A transcryptor's log is the same Merkle log as a node's, checkpointed by
the same :class:`~gateway.audit.checkpoint.Checkpointer`, and witnessed the
same way: every :data:`~gateway.federation.cosigning.WITNESS_INTERVAL_SECONDS`
it sends each node of ``[[witnesses]]`` its newest checkpoint with a
consistency proof from the size that node last cosigned
(:func:`gateway.federation.cosigning.ask_witness`, FederationService
``AddCheckpoint``), over mTLS with its own transcryptor certificate. A node
cosigns only when its ``[[transcryptors]]`` entry pins this transcryptor's
``log_key``, so a transcryptor cannot show one history to its witnesses and
another to an officer who checks its log with ``schakel audit verify``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import TYPE_CHECKING

import grpc
from schakel.v1 import federation_pb2_grpc

from gateway.audit import notes
from gateway.audit.checkpoint import Checkpointer
from gateway.federation.cosigning import (
    WITNESS_DEADLINE_SECONDS,
    WITNESS_INTERVAL_SECONDS,
    ask_witness,
)
from gateway.federation.directory import peer_key
from gateway.logging import get_logger
from gateway.tls import ClientCertificates, node_channel
from gateway.transcryptor.config import WitnessEndpoint

if TYPE_CHECKING:
    from schakel.v1.federation_pb2_grpc import FederationServiceAsyncStub

log = get_logger("transcryptor.witnessing")


def witness_verifiers(witnesses: Sequence[WitnessEndpoint]) -> list[notes.Verifier]:
    """The cosignature keys of ``witnesses`` (checked when the config was loaded)."""
    return [peer_key(w.id, w.witness_key, notes.COSIGNATURE_V1) for w in witnesses]


class Witnessing:
    """Asks every witness in turn to cosign the newest checkpoint, until stopped."""

    def __init__(
        self,
        checkpointer: Checkpointer,
        witnesses: Sequence[WitnessEndpoint],
        certificates: ClientCertificates,
        *,
        interval: float = WITNESS_INTERVAL_SECONDS,
    ) -> None:
        self.checkpointer = checkpointer
        self.witnesses = list(witnesses)
        self.certificates = certificates
        self.interval = interval
        self._channels: dict[str, tuple[int, grpc.aio.Channel]] = {}

    async def _stub(self, witness: WitnessEndpoint) -> FederationServiceAsyncStub:
        generation, credentials = self.certificates.current()
        held = self._channels.get(witness.id)
        if held is None or held[0] != generation:
            if held is not None:
                # A rotated certificate: the next call presents the new one.
                await held[1].close(None)
            held = (generation, node_channel(witness.address, witness.id, credentials))
            self._channels[witness.id] = held
        stub: FederationServiceAsyncStub = federation_pb2_grpc.FederationServiceStub(held[1])
        return stub

    async def round(self) -> None:
        """Ask every witness once; one that fails is asked again next round."""

        async def ask(witness: WitnessEndpoint) -> None:
            stub = await self._stub(witness)
            await ask_witness(self.checkpointer, witness.id, stub, WITNESS_DEADLINE_SECONDS)

        results = await asyncio.gather(*(ask(w) for w in self.witnesses), return_exceptions=True)
        for witness, result in zip(self.witnesses, results, strict=True):
            if isinstance(result, Exception):
                log.error("witness_round_failed", peer=witness.id, error=type(result).__name__)

    async def run(self, stop: asyncio.Event) -> None:
        """A round every ``interval`` seconds until ``stop`` is set; then close the channels."""
        try:
            while not stop.is_set():
                await self.round()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.interval)
        finally:
            for _, channel in self._channels.values():
                await channel.close(None)
            self._channels.clear()
