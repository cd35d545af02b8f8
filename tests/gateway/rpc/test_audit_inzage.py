"""AuditService over real mTLS: an officer's refused subject lookup is itself on that person's
record, as every lookup is (looking a person up is processing about them); and the records and
the inzage report tell the procesregisseur and the FG apart."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from schakel.v1 import audit_pb2, audit_pb2_grpc, case_pb2

from adapters.sdk import encrypt_subject
from gateway.audit import inzage, query
from gateway.flows.inzage import INZAGE_ACTIVITY
from gateway.rpc.audit import AuditService
from gateway.rpc.server import NodeServer, Servicers, build_server
from policy.pseudonyms import FederationKeys
from tests.support.audit import Node, node, record
from tests.support.flow import Flow
from tests.support.pki import HL, RR, Federation, channel_to
from tests.support.regie import BSN as RPC_BSN
from tests.support.regie import PURPOSE, case_ref, open_case, regie

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
        (audit_pb2.SPAN_STATUS_ERROR, INZAGE_ACTIVITY, f"schakel://officer/{HL}/fg")
    ]


async def cosigned(running: Flow) -> None:
    """Wait until RR's partner has cosigned a checkpoint over all of RR's log."""
    parts = running.pair.nodes[RR].parts
    size = (await asyncio.to_thread(parts.audit.head)).size
    for _ in range(150):
        final = await asyncio.to_thread(parts.checkpointer.latest_final)
        if final is not None and final.size >= size:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"no checkpoint of size {size} was cosigned")


async def test_the_records_and_the_report_name_the_officers_role(flow: Flow) -> None:
    """The procesregisseur's action and the FG's lookup name different requesters, by role."""
    case = open_case(flow)
    async with regie(flow) as stub:
        await stub.StartTriage(
            case_pb2.StartTriageRequest(purpose=PURPOSE, case_ref=case_ref(case))
        )
    subject = encrypt_subject("bsn", RPC_BSN, flow.y)
    fg = flow.pair.fed.officer(RR, "fg")
    async with flow.pair.channel(RR, fg) as channel:
        stub_fg = audit_pb2_grpc.AuditServiceStub(channel)
        for _ in range(2):  # the second report proves the first lookup
            await cosigned(flow)
            report = await stub_fg.SubjectReport(audit_pb2.SubjectReportRequest(subject=subject))
    by_name = {e.entry.record.name: e.entry.record.requester for e in report.entries}
    assert by_name == {
        "schakel.v1.CaseService/StartTriage": f"schakel://officer/{RR}/procesregisseur",
        "schakel.v1.AuditService/SubjectReport": f"schakel://officer/{RR}/fg",
    }
    text = inzage.render_text(inzage.SubjectReport(report))
    assert f"aanvrager: schakel://officer/{RR}/procesregisseur;" in text
    assert f"aanvrager: schakel://officer/{RR}/fg;" in text


async def test_a_node_without_pseudonym_keys_has_no_federation_key_to_give(
    served: Served,
) -> None:
    officer = served.fed.officer(HL, "fg")
    async with channel_to(served.server, officer, served.fed.ca_file) as channel:
        stub = audit_pb2_grpc.AuditServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.GetFederationKey(audit_pb2.GetFederationKeyRequest())
    assert err.value.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert "pseudonyms.domain_key" in (err.value.details() or "")
