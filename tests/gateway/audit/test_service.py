"""AuditService on a real node over mTLS: officers only, every answer checkable offline."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from schakel.v1 import audit_pb2, audit_pb2_grpc, common_pb2

from gateway.audit import inzage, merkle, notes
from gateway.audit.checkpoint import Checkpointer
from gateway.audit.store import AuditLog
from gateway.rpc.audit import AuditService
from gateway.rpc.server import NodeServer, Servicers, build_server, open_database
from tests.support import audit_workload as workload
from tests.support.audit import Node
from tests.support.pki import HL, Federation, channel_to


@pytest.fixture
async def served(
    tmp_path: Path,
) -> AsyncIterator[tuple[Federation, NodeServer, Node, workload.Workload]]:
    fed = Federation(tmp_path)
    config = fed.config(fed.node(HL))
    engine = open_database(config)
    log = AuditLog(engine)
    witnesses = [notes.Signer.generate(f"zvh-w{i}", notes.COSIGNATURE_V1) for i in range(2)]
    checkpointer = Checkpointer(
        log,
        notes.Signer.generate(HL),
        witnesses=[w.verifier() for w in witnesses],
        quorum=2,
    )
    n = Node(log, checkpointer.signer, witnesses, checkpointer)
    work = workload.run(n)
    resolver = inzage.node_resolver(work.keys.transcryptor_keys().transcryptor(), work.domain_key)
    service = AuditService(log, checkpointer, n.keys, resolver)
    server = build_server(config, Servicers(audit=service), engine=engine)
    await server.start()
    yield fed, server, n, work
    log.close()
    await server.stop(grace=None)


async def test_officer_gets_verifiable_answers(served) -> None:  # type: ignore[no-untyped-def]
    fed, server, n, work = served
    async with channel_to(server, fed.officer(HL, "fg"), fed.ca_file) as channel:
        stub = audit_pb2_grpc.AuditServiceStub(channel)
        checkpoint = await stub.GetCheckpoint(audit_pb2.GetCheckpointRequest())
        assert checkpoint.final and checkpoint.cosignatures == 2 and checkpoint.size == 21
        opened, _ = notes.open_checkpoint(checkpoint.note, n.signer.verifier())

        bsn, pseudonym = next(iter(work.subjects.items()))
        entries = [
            e async for e in stub.QueryRecords(audit_pb2.AuditQuery(data_subject_id=pseudonym))
        ]
        assert len(entries) == 3
        assert all(e.record.data_subject_id == pseudonym for e in entries)

        proof = await stub.GetInclusionProof(
            audit_pb2.GetInclusionProofRequest(index=entries[1].index, tree_size=opened.size)
        )
        merkle.verify_inclusion(
            merkle.leaf_hash(entries[1].leaf_data),
            entries[1].index,
            opened.size,
            list(proof.hashes),
            opened.root,
        )
        n.log.append_sync(workload.record())
        consistency = await stub.GetConsistencyProof(
            audit_pb2.GetConsistencyProofRequest(old_size=opened.size, new_size=22)
        )
        merkle.verify_consistency(
            opened.size, 22, opened.root, n.log.head().root, list(consistency.hashes)
        )

        verified = await stub.VerifyLog(audit_pb2.VerifyLogRequest())
        assert verified.ok and verified.size == 22, verified.message

        subject = inzage.encrypt_bsn(bsn, work.keys.global_public_key).to_proto()
        report = await stub.SubjectReport(audit_pb2.SubjectReportRequest(subject=subject))
        assert report.data_subject_id == pseudonym and len(report.entries) == 3
        inzage.check_report(report, n.keys)


async def test_bad_requests_get_clear_errors(served) -> None:  # type: ignore[no-untyped-def]
    fed, server, _, _ = served
    async with channel_to(server, fed.officer(HL, "procesregisseur"), fed.ca_file) as channel:
        stub = audit_pb2_grpc.AuditServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as bad_query:
            _ = [e async for e in stub.QueryRecords(audit_pb2.AuditQuery(data_subject_id="BSN"))]
        assert bad_query.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "64 lowercase hex" in (bad_query.value.details() or "")
        with pytest.raises(grpc.aio.AioRpcError) as beyond:
            await stub.GetInclusionProof(audit_pb2.GetInclusionProofRequest(index=5, tree_size=999))
        assert beyond.value.code() == grpc.StatusCode.OUT_OF_RANGE
        garbage = common_pb2.EncryptedPseudonym(b=b"x" * 32, c=b"y" * 32, public_key=b"z" * 32)
        with pytest.raises(grpc.aio.AioRpcError) as bad_subject:
            await stub.SubjectReport(audit_pb2.SubjectReportRequest(subject=garbage))
        assert bad_subject.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_partners_may_not_read_the_audit_log(served) -> None:  # type: ignore[no-untyped-def]
    fed, server, _, _ = served
    partner = fed.partner(HL, "politie-haaglanden", "politie")
    async with channel_to(server, partner, fed.ca_file) as channel:
        stub = audit_pb2_grpc.AuditServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as denied:
            await stub.GetCheckpoint(audit_pb2.GetCheckpointRequest())
        assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
