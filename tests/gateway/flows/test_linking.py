"""The case node makes, widens and closes its peers' links, over real mTLS between two nodes.

RR (on SQLite, then PostgreSQL) has the case; HL's partners take part in it.
Acceptance and AddParticipant tell HL its link before the case changes at
RR; when HL cannot take it, nothing changes. Closure closes HL's link, so
HL starts the link's retention and gives nothing more within it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
import sqlalchemy as sa
from schakel.v1 import audit_pb2, case_pb2, case_pb2_grpc, common_pb2

from gateway.audit import query
from gateway.cases import Case, Referral
from gateway.cases.tables import case_participants
from policy.vocabulary import Phase
from tests.support.flow import ACTIVITY, Flow, running_flow
from tests.support.pki import HL, RR

BSN = "111222333"
PURPOSE = common_pb2.Purpose(processing_activity_id=ACTIVITY)
LINK_CASE = "schakel.v1.FederationService/LinkCase"
PARTNERS = {
    RR: [("politie-rr", "politie")],
    HL: [("politie-hl", "politie"), ("ggz-hl", "ggz")],
}


def sections(node_id: str) -> str:
    return "".join(
        f'\n[[partners]]\nid = "{org}"\norg_type = "{kind}"\n' for org, kind in PARTNERS[node_id]
    )


@pytest.fixture
async def flow(tmp_path: Path, db_url: str) -> AsyncIterator[Flow]:
    async with running_flow(tmp_path, db_url, sections) as started:
        yield started


def pseudonym(flow: Flow, node_id: str) -> str:
    return flow.pseudonym_at(node_id, BSN)


def open_case(flow: Flow) -> Case:
    """A case at RR in triage: opened as a referral would open it, then moved into triage."""
    registry = flow.pair.nodes[RR].parts.registry
    opened = registry.refer(
        Referral(
            referrer_org_id="politie-rr",
            referrer_org_type="politie",
            idempotency_key="ref-1",
            subject=pseudonym(flow, RR),
            activity=ACTIVITY,
            theme="complexe-casuistiek",
        )
    ).case
    return registry.start_triage(opened.id)


def participant(org_id: str, org_type: str, node_id: str) -> common_pb2.Participant:
    return common_pb2.Participant(org_id=org_id, org_type=org_type, node_id=node_id)


def triage(case: Case, *participants: common_pb2.Participant) -> case_pb2.TriageRequest:
    return case_pb2.TriageRequest(
        purpose=PURPOSE,
        case_ref=common_pb2.CaseRef(node_id=RR, case_id=case.id),
        accept=True,
        reason_code="ontvankelijk",
        participants=list(participants),
    )


def records(flow: Flow, node_id: str, name: str) -> list[audit_pb2.AuditRecord]:
    where = query.Filter(data_subject_id=pseudonym(flow, node_id))
    engine = flow.pair.nodes[node_id].parts.engine
    return [e.record for e in query.query(engine, where) if e.record.name == name]


async def test_acceptance_links_the_peer_and_closure_closes_its_link(flow: Flow) -> None:
    case = open_case(flow)
    regie = flow.pair.fed.officer(RR, "procesregisseur")
    async with flow.pair.channel(RR, regie) as channel:
        stub = case_pb2_grpc.CaseServiceStub(channel)
        await stub.Triage(
            triage(
                case,
                participant("politie-rr", "politie", RR),
                participant("politie-hl", "politie", HL),
            )
        )
        links = flow.pair.nodes[HL].parts.links
        link = links.get(RR, case.id)
        assert link is not None and link.is_open and link.phase is Phase.CASUSOVERLEG
        assert link.subject == pseudonym(flow, HL), "the subject in HL's own domain"
        assert [(p.org_id, p.org_type) for p in link.participants] == [("politie-hl", "politie")]
        assert link.org_types == {"politie"} and link.activity == ACTIVITY

        # A participant added later at HL widens the link; RR's types come along.
        await stub.AddParticipant(
            case_pb2.AddParticipantRequest(
                purpose=PURPOSE,
                case_ref=common_pb2.CaseRef(node_id=RR, case_id=case.id),
                participant=participant("ggz-hl", "ggz", HL),
            )
        )
        link = links.get(RR, case.id)
        assert link is not None
        assert [p.org_id for p in link.participants] == ["politie-hl", "ggz-hl"]
        assert link.org_types == {"politie", "ggz"}

        await stub.CloseCase(
            case_pb2.CloseCaseRequest(
                purpose=PURPOSE,
                case_ref=common_pb2.CaseRef(node_id=RR, case_id=case.id),
                outcome="doelen-bereikt",
            )
        )
    closed = links.get(RR, case.id)
    assert closed is not None and not closed.is_open and closed.phase is Phase.AFSCHALING
    assert closed.retain_until is not None and closed.retain_until > closed.closed_at  # type: ignore[operator]
    # Each link told is on record at both ends: RR names HL as requester, HL names RR.
    told = records(flow, RR, LINK_CASE)
    taken = records(flow, HL, LINK_CASE)
    assert len(told) == 3 and {r.requester for r in told} == {f"schakel://node/{HL}"}
    assert len(taken) == 3 and {r.requester for r in taken} == {f"schakel://node/{RR}"}
    assert all(r.status == audit_pb2.SPAN_STATUS_OK for r in told + taken)
    assert [r.phase for r in taken][-1] == common_pb2.PHASE_AFSCHALING


async def test_with_the_peer_down_acceptance_is_unavailable_and_changes_nothing(
    flow: Flow,
) -> None:
    case = open_case(flow)
    await flow.pair.nodes[HL].stop(grace=None)
    regie = flow.pair.fed.officer(RR, "procesregisseur")
    async with flow.pair.channel(RR, regie) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await case_pb2_grpc.CaseServiceStub(channel).Triage(
                triage(
                    case,
                    participant("politie-rr", "politie", RR),
                    participant("politie-hl", "politie", HL),
                ),
                timeout=30,
            )
    assert err.value.code() is grpc.StatusCode.UNAVAILABLE
    assert "nothing changed here" in (err.value.details() or "")
    after = flow.pair.nodes[RR].parts.registry.get(case.id)
    assert after.phase is Phase.TRIAGE and after.participants == ()
    with flow.pair.nodes[RR].parts.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(case_participants)).scalar() == 0
    # The attempt is on record: the link that did not arrive, and the refused triage.
    told = records(flow, RR, LINK_CASE)
    assert [r.status for r in told] == [audit_pb2.SPAN_STATUS_OK, audit_pb2.SPAN_STATUS_ERROR]
    triaged = records(flow, RR, "schakel.v1.CaseService/Triage")
    assert [r.status for r in triaged] == [audit_pb2.SPAN_STATUS_OK, audit_pb2.SPAN_STATUS_ERROR]


async def test_a_link_the_peer_refuses_fails_the_acceptance(flow: Flow) -> None:
    case = open_case(flow)
    regie = flow.pair.fed.officer(RR, "procesregisseur")
    async with flow.pair.channel(RR, regie) as channel:
        stub = case_pb2_grpc.CaseServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            # woonstad is no partner of HL, so HL takes no link naming it.
            await stub.Triage(triage(case, participant("woonstad", "woningcorporatie", HL)))
        assert err.value.code() is grpc.StatusCode.FAILED_PRECONDITION
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.Triage(triage(case, participant("politie-x", "politie", "zvh-elders")))
        assert err.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert "'zvh-elders' is not a peer node" in (err.value.details() or "")
    assert flow.pair.nodes[RR].parts.registry.get(case.id).phase is Phase.TRIAGE
    assert flow.pair.nodes[HL].parts.links.get(RR, case.id) is None
