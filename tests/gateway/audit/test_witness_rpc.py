"""FederationService.AddCheckpoint over mTLS: the witness mapping, node to node."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import grpc
import pytest
from schakel.v1 import federation_pb2, federation_pb2_grpc

from gateway.audit import notes
from gateway.audit.witness import Witness, add_checkpoint_rpc
from gateway.rpc.auth import current_identity
from gateway.rpc.server import Servicers, build_server, open_database
from tests.support.audit import node, record
from tests.support.pki import HL, RR, Federation, channel_to


class _Federation(federation_pb2_grpc.FederationServiceServicer):
    def __init__(self, witness: Witness) -> None:
        self.witness = witness

    async def AddCheckpoint(
        self, request: federation_pb2.AddCheckpointRequest, context: Any
    ) -> federation_pb2.AddCheckpointResponse:
        return await add_checkpoint_rpc(
            self.witness, request, context, current_identity().node_id or ""
        )


async def test_peer_node_gets_a_cosignature_and_stale_sizes_a_conflict(tmp_path: Path) -> None:
    fed = Federation(tmp_path)
    config = fed.config(fed.node(RR))
    engine = open_database(config)
    haaglanden = node(f"sqlite:///{tmp_path / 'hl.db'}")
    assert haaglanden.checkpointer.origin == HL
    wsigner = notes.Signer.generate(RR, notes.COSIGNATURE_V1)
    witness = Witness(engine, wsigner, {HL: haaglanden.signer.verifier()})
    server = build_server(config, Servicers(federation=_Federation(witness)), engine=engine)
    await server.start()
    try:
        haaglanden.log.append_many([record() for _ in range(5)])
        cp = haaglanden.checkpointer.sign()
        async with channel_to(server, fed.node(HL), fed.ca_file) as channel:
            stub = federation_pb2_grpc.FederationServiceStub(channel)
            answer = await stub.AddCheckpoint(haaglanden.checkpointer.witness_request(cp, 0))
            sig = notes.parse_signature_line(answer.cosignature)
            notes.verify_cosignature(notes.parse_note(cp.note).text, sig, wsigner.verifier())
            with pytest.raises(grpc.aio.AioRpcError) as stale:
                await stub.AddCheckpoint(haaglanden.checkpointer.witness_request(cp, 0))
            assert stale.value.code() == grpc.StatusCode.FAILED_PRECONDITION
            assert "holds size 5" in (stale.value.details() or "")
        async with channel_to(server, fed.node("zvh-elders"), fed.ca_file) as channel:
            stub = federation_pb2_grpc.FederationServiceStub(channel)
            with pytest.raises(grpc.aio.AioRpcError) as foreign:
                await stub.AddCheckpoint(haaglanden.checkpointer.witness_request(cp, 5))
            assert foreign.value.code() == grpc.StatusCode.PERMISSION_DENIED
    finally:
        haaglanden.log.close()
        await server.stop(grace=None)
