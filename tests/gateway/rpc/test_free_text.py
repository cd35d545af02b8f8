"""No free text at rest: every stored or forwarded string field refuses a name, a BSN and a date.

Each field of each PartnerService and CaseService request that the node
keeps in a case table or passes on (a reference, a key, a code, a contact
handle, a fact's text) is sent once with a name where a token is expected,
once with an elfproef-valid BSN and once with a birth date. Each is refused
with INVALID_ARGUMENT, and afterwards no case table holds any of the three
values (SQLite, then PostgreSQL).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import pytest
import sqlalchemy as sa
from schakel.v1 import case_pb2, case_pb2_grpc, common_pb2, partner_pb2, partner_pb2_grpc

from adapters.sdk import encrypt_subject
from gateway.tasks.broker import PendingTask
from policy.vocabulary import Phase
from tests.support.flow import Flow
from tests.support.pki import HL, RR
from tests.support.regie import BSN, PURPOSE, case_in, case_ref, node_pseudonym

NAME = "Jan de Vries"
"""Free text where a token is expected: a person's name."""
OTHER_BSN = "123456782"
"""An elfproef-valid BSN, not the subject's."""
BIRTH_DATE = "12-03-1985"
BAD = (NAME, OTHER_BSN, BIRTH_DATE)

Send = Callable[[str], Awaitable[object]]


def _participant(org_id: str) -> common_pb2.Participant:
    return common_pb2.Participant(org_id=org_id, org_type="gemeente", node_id=RR)


def referral(flow: Flow, **changes: Any) -> partner_pb2.SubmitReferralRequest:
    fields: dict[str, Any] = {
        "idempotency_key": "ref-free-text",
        "purpose": PURPOSE,
        "subject": encrypt_subject("bsn", BSN, flow.y),
        "theme": "complexe-casuistiek",
        "criteria": ["meervoudige-problematiek"],
        "reason_codes": ["escalatie"],
        "external_ref": "POL-2026-0001",
    }
    return partner_pb2.SubmitReferralRequest(**(fields | changes))


async def task_for(flow: Flow, kind: partner_pb2.TaskKind.ValueType, ref: Any) -> PendingTask:
    """An open task for ggz-rr about the subject, as a round or an uitvraag sends it."""
    hit = kind == partner_pb2.TASK_KIND_HIT_QUERY
    task = partner_pb2.PartnerTask(
        kind=kind,
        purpose=PURPOSE,
        case_ref=ref,
        phase=common_pb2.PHASE_TRIAGE if hit else common_pb2.PHASE_CASUSOVERLEG,
        categories=["bekend" if hit else "zorg.in_zorg"],
    )
    broker = flow.pair.nodes[RR].parts.tasks
    return await broker.send("ggz-rr", task, subject=node_pseudonym(flow), timeout=60)


def held(flow: Flow, values: tuple[str, ...]) -> list[tuple[str, str]]:
    """(table, value) for each case table row that holds one of ``values``."""
    engine = flow.pair.nodes[RR].parts.engine
    found = []
    with engine.connect() as conn:
        for table in sa.inspect(conn).get_table_names():
            if not table.startswith("case"):
                continue
            for row in conn.execute(sa.text(f'SELECT * FROM "{table}"')):
                text = " ".join(str(v) for v in row)
                found += [(table, v) for v in values if v in text]
    return found


async def test_every_text_field_refuses_a_name_a_bsn_and_a_date(flow: Flow) -> None:
    triage = case_in(flow, Phase.TRIAGE, key="in-triage")
    meeting = case_in(flow, Phase.CASUSOVERLEG, key="in-casusoverleg")
    t_ref, m_ref = case_ref(triage), case_ref(meeting)
    hit_task = await task_for(flow, partner_pb2.TASK_KIND_HIT_QUERY, t_ref)
    facts_task = await task_for(flow, partner_pb2.TASK_KIND_FACT_QUERY, m_ref)
    politie = flow.pair.fed.partner(RR, "politie-rr", "politie", force=True)
    ggz = flow.pair.fed.partner(RR, "ggz-rr", "ggz", force=True)
    officer = flow.pair.fed.officer(RR, "procesregisseur")
    async with (
        flow.pair.channel(RR, politie) as p_channel,
        flow.pair.channel(RR, ggz) as g_channel,
        flow.pair.channel(RR, officer) as o_channel,
    ):
        partner = partner_pb2_grpc.PartnerServiceStub(p_channel)
        answering = partner_pb2_grpc.PartnerServiceStub(g_channel)
        regie = case_pb2_grpc.CaseServiceStub(o_channel)

        def fact_with(text: str) -> partner_pb2.AnswerFactsRequest:
            fact = common_pb2.Fact(category="zorg.in_zorg")
            fact.fields["behandelaar"].text = text
            return partner_pb2.AnswerFactsRequest(
                task_id=facts_task.task.task_id, purpose=PURPOSE, case_ref=m_ref, facts=[fact]
            )

        fields: dict[str, Send] = {
            "SubmitReferral.idempotency_key": lambda v: partner.SubmitReferral(
                referral(flow, idempotency_key=v)
            ),
            "SubmitReferral.external_ref": lambda v: partner.SubmitReferral(
                referral(flow, external_ref=v)
            ),
            "SubmitReferral.theme": lambda v: partner.SubmitReferral(referral(flow, theme=v)),
            "SubmitReferral.criteria": lambda v: partner.SubmitReferral(
                referral(flow, criteria=[v])
            ),
            "SubmitReferral.reason_codes": lambda v: partner.SubmitReferral(
                referral(flow, reason_codes=[v])
            ),
            "AnswerHit.contact_handle": lambda v: answering.AnswerHit(
                partner_pb2.AnswerHitRequest(
                    task_id=hit_task.task.task_id,
                    purpose=PURPOSE,
                    case_ref=t_ref,
                    known=True,
                    contact_handle=v,
                )
            ),
            "AnswerFacts.facts.fields.text": lambda v: answering.AnswerFacts(fact_with(v)),
            "Triage.reason_code": lambda v: regie.Triage(
                case_pb2.TriageRequest(
                    purpose=PURPOSE,
                    case_ref=t_ref,
                    accept=True,
                    reason_code=v,
                    participants=[_participant("gemeente-rr")],
                )
            ),
            "Triage.participants.org_id": lambda v: regie.Triage(
                case_pb2.TriageRequest(
                    purpose=PURPOSE,
                    case_ref=t_ref,
                    accept=True,
                    reason_code="ontvankelijk",
                    participants=[_participant(v)],
                )
            ),
            "AddParticipant.participant.org_id": lambda v: regie.AddParticipant(
                case_pb2.AddParticipantRequest(
                    purpose=PURPOSE, case_ref=m_ref, participant=_participant(v)
                )
            ),
            "RecordGround.evidence_ref": lambda v: regie.RecordGround(
                case_pb2.RecordGroundRequest(
                    purpose=PURPOSE,
                    case_ref=m_ref,
                    kind=case_pb2.GROUND_KIND_CONSENT,
                    category="zorg.in_zorg",
                    provider_org_id="ggz-rr",
                    evidence_ref=v,
                )
            ),
            "RecordGround.provider_org_id": lambda v: regie.RecordGround(
                case_pb2.RecordGroundRequest(
                    purpose=PURPOSE,
                    case_ref=m_ref,
                    kind=case_pb2.GROUND_KIND_CONSENT,
                    category="zorg.in_zorg",
                    provider_org_id=v,
                    evidence_ref="toestemming-1",
                )
            ),
            "SetBottlenecks.tags": lambda v: regie.SetBottlenecks(
                case_pb2.SetBottlenecksRequest(purpose=PURPOSE, case_ref=m_ref, tags=[v])
            ),
            "CloseCase.outcome": lambda v: regie.CloseCase(
                case_pb2.CloseCaseRequest(purpose=PURPOSE, case_ref=m_ref, outcome=v)
            ),
            "HandOverCase.idempotency_key": lambda v: regie.HandOverCase(
                case_pb2.HandOverCaseRequest(
                    purpose=PURPOSE,
                    case_ref=m_ref,
                    target_node_id=HL,
                    idempotency_key=v,
                    reason_code="betrokkene-verhuisd",
                )
            ),
            "HandOverCase.reason_code": lambda v: regie.HandOverCase(
                case_pb2.HandOverCaseRequest(
                    purpose=PURPOSE,
                    case_ref=m_ref,
                    target_node_id=HL,
                    idempotency_key="verhuizing-1",
                    reason_code=v,
                )
            ),
        }
        for field, send in fields.items():
            for value in BAD:
                with pytest.raises(grpc.aio.AioRpcError) as err:
                    await send(value)
                where = (field, value, err.value.details())
                assert err.value.code() is grpc.StatusCode.INVALID_ARGUMENT, where
                details = err.value.details() or ""
                assert OTHER_BSN not in details and BIRTH_DATE not in details, where
    registry = flow.pair.nodes[RR].parts.registry
    assert registry.get(triage.id) == triage and registry.get(meeting.id) == meeting
    assert held(flow, BAD) == []
