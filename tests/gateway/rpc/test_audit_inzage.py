"""AuditService over real mTLS: an officer's refused subject lookup is itself on that person's
record, as every lookup is (looking a person up is processing about them)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from schakel.v1 import audit_pb2, audit_pb2_grpc

from gateway.audit import inzage, query
from gateway.flows.inzage import INZAGE_ACTIVITY
from gateway.rpc.audit import AuditService
from gateway.rpc.server import NodeServer, Servicers, build_server
from policy.pseudonyms import FederationKeys
from tests.support.audit import Node, node, record
from tests.support.pki import HL, Federation, channel_to

BSN = "123456782"


@dataclass
class Served:
    fed: Federation
    server: NodeServer
    node: Node
    keys: FederationKeys
    resolver: inzage.SubjectResolver

    def pseudonym(self) -> str:
        """The node-domain pseudonym of :data:`BSN`, as the inzage resolves it."""
        return inzage.resolve_locally(
            self.keys.transcryptor_keys().transcryptor(),
            self.keys.domain_key_material(self.node.signer.name),
            inzage.encrypt_bsn(BSN, self.keys.global_public_key),
        )


@pytest.fixture
async def served(tmp_path: Path, db_url: str) -> AsyncIterator[Served]:
    """HL's AuditService on ``db_url``, recording refusals as a whole node does."""
    fed = Federation(tmp_path / "pki")
    n = node(db_url)
    keys = FederationKeys.generate()
    resolver = inzage.node_resolver(
        keys.transcryptor_keys().transcryptor(), keys.domain_key_material(n.signer.name)
    )
    service = AuditService(n.log, n.checkpointer, n.keys, resolver)
    server = build_server(
        fed.config(fed.node(HL)), Servicers(audit=service), engine=n.log.engine, audit=n.log
    )
    await server.start()
    try:
        yield Served(fed, server, n, keys, resolver)
    finally:
        await server.stop(grace=None)
        n.log.close()


async def test_a_refused_subject_report_is_on_the_persons_record(served: Served) -> None:
    served.node.log.append_sync(record(served.pseudonym()))
    served.node.checkpointer.sign()  # signed, but no witness cosigned it: no proofs yet
    officer = served.fed.officer(HL, "fg")
    subject = inzage.encrypt_bsn(BSN, served.keys.global_public_key).to_proto()
    async with channel_to(served.server, officer, served.fed.ca_file) as channel:
        stub = audit_pb2_grpc.AuditServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.SubjectReport(audit_pb2.SubjectReportRequest(subject=subject))
    assert err.value.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert "no cosigned checkpoint" in (err.value.details() or "")
    where = query.Filter(data_subject_id=served.pseudonym())
    lookups = [
        e.record
        for e in query.query(served.node.log.engine, where)
        if e.record.name == "schakel.v1.AuditService/SubjectReport"
    ]
    assert [(r.status, r.processing_activity_id, r.requester) for r in lookups] == [
        (audit_pb2.SPAN_STATUS_ERROR, INZAGE_ACTIVITY, officer.identity.uri)
    ]
