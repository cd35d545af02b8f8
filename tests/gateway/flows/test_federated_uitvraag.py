"""Uitvraag and closure with participants at a peer node, over real mTLS between two nodes.

The case lives at RR; some participants are partner organisations of HL.
RR reaches them only through HL (AskParticipant, DeliverFacts), and every
fact arrives with the subject in the recipient's own domain.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from schakel.v1 import (
    audit_pb2,
    case_pb2,
    case_pb2_grpc,
    common_pb2,
    federation_pb2,
    federation_pb2_grpc,
)

from adapters.sdk import encrypt_subject
from gateway.flows.delivery import PEER_DEADLINE_SECONDS
from tests.support.caseflow import ANTECEDENTEN, HUISVESTING, categories_of, deliveries, fact
from tests.support.flow import Flow, MemoryPartner, running_flow
from tests.support.peerflow import (
    PARTICIPANTS,
    PARTNERS,
    node,
    open_accepted_case,
    records,
    regie,
    sections,
    sims,
)
from tests.support.pki import HL, RR, LogCapture
from tests.support.referrals import BSN, PURPOSE


@pytest.fixture
async def flow(tmp_path: Path, db_url: str) -> AsyncIterator[Flow]:
    """RR (on ``db_url``) and HL (SQLite), each with its own partners."""
    async with running_flow(tmp_path, db_url, sections) as started:
        yield started


async def start(flow: Flow) -> dict[str, MemoryPartner]:
    running = sims()
    for node_id, orgs in PARTNERS.items():
        for org_id, org_type in orgs:
            await flow.run_partner(node_id, org_id, org_type, running[org_id])
    return running


def antecedenten(sim: MemoryPartner) -> dict[str, common_pb2.Fact]:
    """The police facts a partner got, by the worst offence type (which tells them apart)."""
    return {
        f.fields["zwaarste_soort"].text: f
        for _, task in sim.delivered
        for f in task.facts
        if f.category == ANTECEDENTEN
    }


async def test_uitvraag_reaches_providers_and_recipients_at_the_peer_node(
    flow: Flow, logs: LogCapture
) -> None:
    running = await start(flow)
    async with regie(flow) as channel:
        stub = case_pb2_grpc.CaseServiceStub(channel)
        ref = await open_accepted_case(flow, stub)
        result = await stub.StartUitvraag(
            case_pb2.StartUitvraagRequest(
                purpose=PURPOSE, case_ref=ref, categories=[ANTECEDENTEN, HUISVESTING]
            )
        )
    outcome = {p.provider.org_id: p for p in result.providers}
    assert {org: p.answered for org, p in outcome.items()} == {
        "politie-rr": True,
        "gemeente-rr": True,
        "politie-hl": True,
        "gemeente-hl": True,
    }
    assert all(not p.undelivered for p in result.providers)
    # HL asked its own partner, with the subject in politie-hl's own domain.
    ((asked_subject, asked),) = running["politie-hl"].asked
    assert running["politie-hl"].index[asked_subject] == BSN
    assert asked == (ANTECEDENTEN,)  # politie may not release housing data

    await deliveries(running["gemeente-rr"], 2)
    await deliveries(running["gemeente-hl"], 3)
    await deliveries(running["politie-hl"], 1)
    await deliveries(running["politie-rr"], 1)
    # gemeente-rr (at RR) gets politie-hl's record summary, minimised at HL.
    from_hl = antecedenten(running["gemeente-rr"])["vermogen"]
    assert from_hl.fields["aantal"].text == "6+"
    assert from_hl.fields["laatste_datum"].date == common_pb2.Date(year=2026)
    assert "intern_kenmerk" not in from_hl.fields
    # gemeente-hl (at HL) gets both police summaries and gemeente-rr's housing facts.
    assert set(antecedenten(running["gemeente-hl"])) == {"geweld", "vermogen"}
    assert categories_of(running["gemeente-hl"]) == {ANTECEDENTEN, HUISVESTING}
    # The police at either node get each other's summary and no housing data.
    assert set(antecedenten(running["politie-hl"])) == {"geweld"}
    assert set(antecedenten(running["politie-rr"])) == {"vermogen"}
    assert categories_of(running["politie-hl"]) == {ANTECEDENTEN}
    assert categories_of(running["politie-rr"]) == {ANTECEDENTEN}
    # Every delivery names the subject in the recipient's own domain.
    for org_id in ("gemeente-rr", "gemeente-hl", "politie-hl", "politie-rr"):
        assert {bsn for bsn, _ in running[org_id].delivered} == {BSN}, org_id
    # HL's partner outside the case is neither asked nor told.
    assert running["ggz-hl"].asked == [] and running["ggz-hl"].delivered == []

    # RR's vault keeps politie-hl's facts as the regie may have them: minimised.
    stored = {
        (s.provider_org_id, s.category): s.fact
        for s in node(flow).parts.registry.facts(ref.case_id)
    }
    assert stored[("politie-hl", ANTECEDENTEN)].fields["aantal"].text == "6+"

    # HL audited the question and each release under its own node pseudonym.
    hl_records = records(flow, HL)
    asks = [r for r in hl_records if r.name.endswith("/AskParticipant")]
    delivers = [r for r in hl_records if r.name.endswith("/DeliverFacts")]
    assert len(asks) >= 2 and len(delivers) >= 3
    expected = flow.pseudonym_at(HL, BSN)
    assert {r.data_subject_id for r in asks + delivers} == {expected}
    assert all(r.requester == f"schakel://node/{RR}" for r in asks + delivers)
    text = "\n".join(str(line) for line in logs.lines())
    assert BSN not in text and "dakloos" not in text and "vermogen" not in text


async def test_with_the_peer_down_the_uitvraag_answers_in_time_and_names_what_did_not_arrive(
    flow: Flow,
) -> None:
    running = sims()
    for org_id, org_type in PARTNERS[RR]:
        await flow.run_partner(RR, org_id, org_type, running[org_id])
    async with regie(flow) as channel:
        stub = case_pb2_grpc.CaseServiceStub(channel)
        ref = await open_accepted_case(flow, stub)
        await node(flow, HL).stop(grace=None)
        started = asyncio.get_running_loop().time()
        result = await stub.StartUitvraag(
            case_pb2.StartUitvraagRequest(
                purpose=PURPOSE, case_ref=ref, categories=[ANTECEDENTEN], deadline_ms=2000
            )
        )
        took = asyncio.get_running_loop().time() - started
    assert took < 2.0 + PEER_DEADLINE_SECONDS
    outcome = {p.provider.org_id: p for p in result.providers}
    assert not outcome["politie-hl"].answered and not outcome["gemeente-hl"].answered
    assert outcome["politie-rr"].answered
    assert sorted(p.org_id for p in outcome["politie-rr"].undelivered) == [
        "gemeente-hl",
        "politie-hl",
    ]
    assert all(p.node_id == HL for p in outcome["politie-rr"].undelivered)
    # The local recipient still got its facts.
    await deliveries(running["gemeente-rr"], 1)
    assert set(antecedenten(running["gemeente-rr"])) == {"geweld"}
    # Each release to HL is on record, followed by a record saying it did not arrive.
    failed = [
        r
        for r in records(flow, RR)
        if r.name.endswith("/StartUitvraag") and r.status == audit_pb2.SPAN_STATUS_ERROR
    ]
    assert sorted(r.requester for r in failed) == [
        f"schakel://partner/{HL}/gemeente-hl",
        f"schakel://partner/{HL}/politie-hl",
    ]


async def test_closure_tells_participants_at_the_peer_node_the_outcome_only(flow: Flow) -> None:
    running = await start(flow)
    async with regie(flow) as channel:
        stub = case_pb2_grpc.CaseServiceStub(channel)
        ref = await open_accepted_case(flow, stub)
        await stub.CloseCase(
            case_pb2.CloseCaseRequest(purpose=PURPOSE, case_ref=ref, outcome="doelen-bereikt")
        )
    for org_id, _, _ in PARTICIPANTS:
        (only,) = await deliveries(running[org_id], 1)
        bsn, task = only
        assert bsn == BSN, org_id
        assert task.phase == common_pb2.PHASE_AFSCHALING
        assert [(f.category, f.fields["uitkomst"].text) for f in task.facts] == [
            ("uitkomst", "doelen-bereikt")
        ]
    assert running["ggz-hl"].delivered == []
    told = [r for r in records(flow, HL) if r.name.endswith("/DeliverFacts")]
    assert len(told) == 2
    assert {r.provider for r in told} == {f"schakel://node/{RR}"}


def delivery(
    flow: Flow, ref: common_pb2.CaseRef, **changes: object
) -> federation_pb2.DeliverFactsRequest:
    request = federation_pb2.DeliverFactsRequest(
        purpose=PURPOSE,
        case_ref=ref,
        subject=flow.subject_at(HL, BSN),
        phase=common_pb2.PHASE_CASUSOVERLEG,
        recipient=common_pb2.Participant(org_id="politie-hl", org_type="politie", node_id=HL),
        provider=common_pb2.Participant(org_id="gemeente-rr", org_type="gemeente", node_id=RR),
        facts=[fact(HUISVESTING, status="dakloos")],
    )
    for name, value in changes.items():
        getattr(request, name).CopyFrom(value)
    return request


async def test_the_peer_refuses_deliveries_it_cannot_stand_behind(flow: Flow) -> None:
    ref = common_pb2.CaseRef(node_id=RR, case_id="c" * 32)
    broker = node(flow, HL).parts.tasks
    await flow.link(HL, RR, ref, BSN, [("politie-hl", "politie")], ["politie", "gemeente"])
    async with flow.pair.channel(HL, flow.pair.fed.node(RR, force=True)) as channel:
        stub = federation_pb2_grpc.FederationServiceStub(channel)
        # gemeente -> politie housing data: HL's policy withholds it, nothing is queued.
        answer = await stub.DeliverFacts(delivery(flow, ref))
        assert list(answer.delivered) == []
        assert answer.decision.outcome == common_pb2.DECISION_OUTCOME_DENY
        refusals = {
            "woonstad is not a partner": (
                delivery(
                    flow,
                    ref,
                    recipient=common_pb2.Participant(
                        org_id="woonstad", org_type="woningcorporatie", node_id=HL
                    ),
                ),
                grpc.StatusCode.NOT_FOUND,
                "'woonstad' is not a partner organisation of node",
            ),
            "wrong type": (
                delivery(
                    flow,
                    ref,
                    recipient=common_pb2.Participant(
                        org_id="politie-hl", org_type="gemeente", node_id=HL
                    ),
                ),
                grpc.StatusCode.INVALID_ARGUMENT,
                "is of type 'politie' here, not 'gemeente'",
            ),
            "another node's case": (
                delivery(flow, common_pb2.CaseRef(node_id=HL, case_id="c" * 32)),
                grpc.StatusCode.INVALID_ARGUMENT,
                "case_ref must name a case of the calling node",
            ),
            "subject for another domain": (
                delivery(flow, ref, subject=encrypt_subject_proto(flow)),
                grpc.StatusCode.INVALID_ARGUMENT,
                "subject must be encrypted for this node's domain",
            ),
        }
        for what, (request, code, message) in refusals.items():
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await stub.DeliverFacts(request)
            assert err.value.code() is code, what
            assert message in (err.value.details() or ""), what
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.AskParticipant(
                federation_pb2.AskParticipantRequest(
                    purpose=PURPOSE,
                    case_ref=ref,
                    subject=delivery(flow, ref).subject,
                    provider=common_pb2.Participant(
                        org_id="politie-rr", org_type="politie", node_id=RR
                    ),
                    categories=[ANTECEDENTEN],
                    recipient_org_types=["zvh"],
                )
            )
        assert err.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert f"provider.node_id is '{RR}'; this node is '{HL}'" in (err.value.details() or "")
    assert broker.streams("politie-hl") == 0
    hl_records = [
        r for r in records(flow, HL) if r.name.endswith(("/DeliverFacts", "/AskParticipant"))
    ]
    assert len(hl_records) == 1 + len(refusals) + 1
    assert sum(r.status == audit_pb2.SPAN_STATUS_ERROR for r in hl_records) == len(refusals) + 1
    # A partner certificate may not use the node-to-node API at all.
    partner = flow.pair.fed.partner(HL, "politie-hl", "politie", force=True)
    async with flow.pair.channel(HL, partner) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await federation_pb2_grpc.FederationServiceStub(channel).DeliverFacts(
                delivery(flow, ref)
            )
        assert err.value.code() is grpc.StatusCode.PERMISSION_DENIED


def encrypt_subject_proto(flow: Flow) -> common_pb2.EncryptedPseudonym:
    """The subject still under the federation key, not transcrypted to HL."""
    return encrypt_subject("bsn", BSN, flow.y)
