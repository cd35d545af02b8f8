"""What the fuzzer starts from: cases in three phases, open tasks, a valid request per RPC.

The cases are opened straight in RR's registry, about one subject; two
questions to politie-rr stay open for the whole run. Every RPC gets a
request its rightful caller could send and the node would take, so the
fuzzer's changes to one or two of its fields reach the checks behind the
first.
"""

from __future__ import annotations

import asyncio
import os
from datetime import UTC, datetime, timedelta

from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from schakel.v1 import audit_pb2, case_pb2, common_pb2, federation_pb2, partner_pb2

from adapters.sdk import encrypt_subject
from certs.identity import PeerKind, make_identity
from gateway.cases import Participant, Referral
from gateway.flows.crossing import Crossing, record
from policy.pseudonyms import Ciphertext
from tests.support.flow import ACTIVITY, Flow
from tests.support.fuzzing import Seeds
from tests.support.pki import HL, OIN, RR

BSN = "111222333"
HL_CASE = "ab" * 16
"""A case of HL, as a peer's requests name it."""


def _stamp(moment: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(moment)
    return stamp


def _cases(flow: Flow, pseudonym: str) -> tuple[str, str, str]:
    """Cases at RR about the subject: in aanmelding, in casusoverleg, and closed."""
    registry = flow.pair.nodes[RR].parts.registry

    def referral(key: str) -> str:
        return registry.refer(
            Referral(
                referrer_org_id="politie-rr",
                referrer_org_type="politie",
                idempotency_key=key,
                subject=pseudonym,
                activity=ACTIVITY,
                theme="complexe-casuistiek",
            )
        ).case.id

    opened, accepted, closed = referral("fuzz-1"), referral("fuzz-2"), referral("fuzz-3")
    for case_id in (accepted, closed):
        registry.start_triage(case_id)
        registry.accept(
            case_id,
            reason_code="ontvankelijk",
            participants=[
                Participant("politie-rr", "politie", RR),
                Participant("ggz-hl", "ggz", HL),
            ],
        )
    registry.close(closed, outcome="doelen-bereikt", retention_days=30)
    return opened, accepted, closed


async def _open_tasks(flow: Flow, case_id: str, pseudonym: str) -> tuple[str, str, str]:
    """A hit and an uitvraag question and a delivery to politie-rr, open for the whole run."""
    tasks = flow.pair.nodes[RR].parts.tasks
    ids = []
    for kind, phase, category in (
        (partner_pb2.TASK_KIND_HIT_QUERY, common_pb2.PHASE_AANMELDING, "bekend"),
        (partner_pb2.TASK_KIND_FACT_QUERY, common_pb2.PHASE_CASUSOVERLEG, "justitie.antecedenten"),
        (partner_pb2.TASK_KIND_FACT_DELIVERY, common_pb2.PHASE_CASUSOVERLEG, ""),
    ):
        task = partner_pb2.PartnerTask(
            kind=kind,
            purpose=common_pb2.Purpose(processing_activity_id=ACTIVITY),
            case_ref=common_pb2.CaseRef(node_id=RR, case_id=case_id),
            phase=phase,
            categories=[category] if category else [],
        )
        await tasks.send("politie-rr", task, subject=pseudonym, timeout=3600)
        ids.append(task.task_id)
    return ids[0], ids[1], ids[2]


async def _hl_checkpoint(flow: Flow) -> Message | None:
    """HL's request to have RR witness its newest checkpoint, once HL has signed one."""
    hl = flow.pair.nodes[HL].parts
    rr = make_identity(PeerKind.NODE, node_id=RR, oin=OIN)
    await record(hl.audit, Crossing(name="schakel.v1.FederationService/HitNoHit", caller=rr))
    for _ in range(100):
        latest = hl.checkpointer.latest()
        if latest is not None:
            request: Message = hl.checkpointer.witness_request(latest, 0)
            return request
        await asyncio.sleep(0.05)
    return None


async def seeds_for(flow: Flow) -> Seeds:
    """Seeds and a valid request per RPC, over cases and tasks made at RR now."""
    parts = flow.pair.nodes[RR].parts
    assert parts.policy is not None and parts.subjects is not None
    bundle = parts.policy.evaluator.policy.bundle
    subjects = parts.subjects
    sent = encrypt_subject("bsn", BSN, flow.y)
    (here,) = await subjects.for_domain([subjects.parse(sent)], RR, ACTIVITY)
    pseudonym = await subjects.node_pseudonym(Ciphertext.from_proto(sent), ACTIVITY)
    opened, accepted, closed = _cases(flow, pseudonym)
    hit_task, facts_task, delivery_task = await _open_tasks(flow, accepted, pseudonym)
    purpose = common_pb2.Purpose(processing_activity_id=ACTIVITY)
    ref = {c: common_pb2.CaseRef(node_id=RR, case_id=c) for c in (opened, accepted, closed)}
    peer_case = common_pb2.CaseRef(node_id=HL, case_id=HL_CASE)
    politie = common_pb2.Participant(org_id="politie-rr", org_type="politie", node_id=RR)
    ggz_hl = common_pb2.Participant(org_id="ggz-hl", org_type="ggz", node_id=HL)
    fact = common_pb2.Fact(category="justitie.antecedenten")
    fact.fields["aantal"].number = 2
    now = datetime.now(UTC)
    requests: list[Message] = [
        partner_pb2.SubmitReferralRequest(
            idempotency_key="fuzz-referral",
            purpose=purpose,
            subject=sent,
            theme="complexe-casuistiek",
            criteria=["meervoudige-problematiek"],
            reason_codes=["escalatie"],
            external_ref="REF-1",
        ),
        partner_pb2.GetCaseStatusRequest(purpose=purpose, case_ref=ref[opened]),
        partner_pb2.ReceiveTasksRequest(kinds=[partner_pb2.TASK_KIND_FACT_DELIVERY]),
        partner_pb2.AnswerHitRequest(
            task_id=hit_task,
            purpose=purpose,
            case_ref=ref[accepted],
            known=True,
            contact_handle="wijkagent@politie-rr.example",
        ),
        partner_pb2.AnswerFactsRequest(
            task_id=facts_task, purpose=purpose, case_ref=ref[accepted], facts=[fact]
        ),
        partner_pb2.AcknowledgeTaskRequest(task_id=delivery_task),
        partner_pb2.PseudonymiseRequest(purpose=purpose, subjects=[sent]),
        case_pb2.StartTriageRequest(purpose=purpose, case_ref=ref[opened]),
        case_pb2.TriageRequest(
            purpose=purpose,
            case_ref=ref[opened],
            accept=True,
            reason_code="ontvankelijk",
            participants=[politie, ggz_hl],
        ),
        case_pb2.AddParticipantRequest(
            purpose=purpose, case_ref=ref[accepted], participant=politie
        ),
        case_pb2.RecordGroundRequest(
            purpose=purpose,
            case_ref=ref[accepted],
            kind=case_pb2.GROUND_KIND_CONSENT,
            category="zorg.in_zorg",
            provider_org_id="ggz-hl",
            evidence_ref="toestemming-1",
        ),
        case_pb2.RunHitNoHitRequest(purpose=purpose, case_ref=ref[opened], deadline_ms=300),
        case_pb2.StartUitvraagRequest(
            purpose=purpose,
            case_ref=ref[accepted],
            categories=["justitie.antecedenten"],
            deadline_ms=300,
        ),
        case_pb2.SetBottlenecksRequest(purpose=purpose, case_ref=ref[closed], tags=["huisvesting"]),
        case_pb2.CloseCaseRequest(
            purpose=purpose, case_ref=ref[accepted], outcome="doelen-bereikt"
        ),
        case_pb2.HandOverCaseRequest(
            purpose=purpose,
            case_ref=ref[opened],
            target_node_id=HL,
            idempotency_key="verhuizing-1",
            reason_code="betrokkene-verhuisd",
        ),
        federation_pb2.FederatedHitRequest(
            purpose=purpose, case_ref=peer_case, subject=here, phase=common_pb2.PHASE_AANMELDING
        ),
        federation_pb2.FederatedFactsRequest(
            purpose=purpose,
            case_ref=peer_case,
            subject=here,
            phase=common_pb2.PHASE_CASUSOVERLEG,
            categories=["justitie.antecedenten"],
            recipient_org_type="ggz",
        ),
        federation_pb2.TransferCaseRequest(
            purpose=purpose,
            case_ref=peer_case,
            subject=here,
            theme="complexe-casuistiek",
            phase=common_pb2.PHASE_TRIAGE,
            bottlenecks=["huisvesting"],
            idempotency_key=f"{HL_CASE}:verhuizing-1",
        ),
        federation_pb2.LinkCaseRequest(
            purpose=purpose,
            case_ref=peer_case,
            subject=here,
            phase=common_pb2.PHASE_CASUSOVERLEG,
            participants=[politie],
            participant_org_types=["politie", "ggz"],
        ),
        federation_pb2.AskParticipantRequest(
            purpose=purpose,
            case_ref=peer_case,
            subject=here,
            provider=politie,
            categories=["justitie.antecedenten"],
            recipient_org_types=["zvh", "ggz"],
            deadline_ms=200,
        ),
        federation_pb2.DeliverFactsRequest(
            purpose=purpose,
            case_ref=peer_case,
            subject=here,
            phase=common_pb2.PHASE_CASUSOVERLEG,
            recipient=politie,
            provider=ggz_hl,
            facts=[fact],
        ),
        federation_pb2.SignalsRequest(
            purpose=common_pb2.Purpose(processing_activity_id="zvh.signalering"),
            period_start=_stamp(now - timedelta(days=90)),
            period_end=_stamp(now),
        ),
        audit_pb2.AuditQuery(data_subject_id=pseudonym, limit=10),
        audit_pb2.SubjectReportRequest(subject=sent),
        # The log grows from the first calls on; these sizes exist by then.
        audit_pb2.GetInclusionProofRequest(index=0, tree_size=2),
        audit_pb2.GetConsistencyProofRequest(old_size=1, new_size=2),
    ]
    checkpoint = await _hl_checkpoint(flow)
    if checkpoint is not None:
        requests.append(checkpoint)
    messages: dict[str, list[Message]] = {}
    for request in requests:
        messages.setdefault(request.DESCRIPTOR.full_name, []).append(request)
    messages |= {
        "schakel.v1.Purpose": [
            common_pb2.Purpose(processing_activity_id=a) for a in bundle.activities
        ],
        "schakel.v1.CaseRef": [*ref.values(), peer_case],
        "schakel.v1.EncryptedPseudonym": [sent, here],
        "schakel.v1.Participant": [politie, ggz_hl],
        "schakel.v1.Fact": [fact],
        "google.protobuf.Timestamp": [_stamp(now)],
    }
    strings = [
        RR,
        HL,
        HL_CASE,
        *bundle.activities,
        *bundle.categories,
        *bundle.themes,
        *bundle.outcomes,
        *bundle.bottlenecks,
        opened,
        accepted,
        closed,
        hit_task,
        facts_task,
        delivery_task,
        pseudonym,
        "zvh.signalering",
        "politie-rr",
        "ggz-hl",
        "politie",
        "ggz",
        "zvh",
        "ontvankelijk",
        "betrokkene-verhuisd",
        "wijkagent@politie-rr.example",
        BSN,
        "onbekend",
        f"schakel://node/{HL}",
    ]
    blobs = [sent.b, sent.c, sent.public_key, bytes.fromhex(pseudonym), os.urandom(32)]
    return Seeds(strings=strings, blobs=blobs, messages=messages)


__all__ = ["BSN", "HL_CASE", "seeds_for"]
