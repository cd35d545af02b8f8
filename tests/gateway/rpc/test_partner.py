"""PartnerService over mTLS: refusals in the person's inzage, bad input short INVALID_ARGUMENT.

A refused referral that carried a decryptable subject is recorded (status
ERROR) under that person's node-domain pseudonym, whatever was wrong with
the rest of it. A malformed request, however large its fields, is answered
INVALID_ARGUMENT with a message under 1 KB, changes nothing, and is never
answered UNAVAILABLE or INTERNAL.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import pytest
import sqlalchemy as sa
from schakel.v1 import (
    audit_pb2,
    audit_pb2_grpc,
    case_pb2,
    case_pb2_grpc,
    common_pb2,
    federation_pb2,
    federation_pb2_grpc,
    partner_pb2,
    partner_pb2_grpc,
)

from adapters.sdk import encrypt_subject
from gateway.cases import Hit
from gateway.tasks.broker import PendingTask
from policy import signing
from tests.support.flow import ACTIVITY, Flow
from tests.support.pki import HL, RR

BSN = "111222333"
PURPOSE = common_pb2.Purpose(processing_activity_id=ACTIVITY)
SUBMIT = "schakel.v1.PartnerService/SubmitReferral"
BIG = 100_000
"""Characters in an oversized field: far beyond gRPC's 16 KB metadata limit."""
MAX_DETAILS = 1024
ANTECEDENTEN = "justitie.antecedenten"


def referral(flow: Flow, key: str, **changes: Any) -> partner_pb2.SubmitReferralRequest:
    fields: dict[str, Any] = {
        "idempotency_key": key,
        "purpose": PURPOSE,
        "subject": encrypt_subject("bsn", BSN, flow.y),
        "theme": "complexe-casuistiek",
        "criteria": ["meervoudige-problematiek"],
        "reason_codes": ["escalatie"],
        "external_ref": "POL-2026-0001",
    }
    fields.update(changes)
    return partner_pb2.SubmitReferralRequest(**fields)


def node_pseudonym(flow: Flow) -> str:
    """The subject's pseudonym in RR's own domain, as its audit log indexes it."""
    return flow.pseudonym_at(RR, BSN)


async def inzage(flow: Flow) -> list[audit_pb2.AuditRecord]:
    """Every record about the subject, as RR's privacy officer queries them."""
    fg = flow.pair.fed.officer(RR, "fg")
    async with flow.pair.channel(RR, fg) as channel:
        return [
            e.record
            async for e in audit_pb2_grpc.AuditServiceStub(channel).QueryRecords(
                audit_pb2.AuditQuery(data_subject_id=node_pseudonym(flow))
            )
        ]


def cases(flow: Flow) -> int:
    with flow.pair.nodes[RR].parts.engine.connect() as conn:
        return int(conn.execute(sa.text("select count(*) from cases")).scalar_one())


async def refusal(call: Awaitable[object]) -> grpc.aio.AioRpcError:
    """The error ``call`` ends with; it must be short and never claim a node fault."""
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call
    error = err.value
    assert error.code() not in (
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNKNOWN,
    ), error.details()
    assert len((error.details() or "").encode()) < MAX_DETAILS, error.code()
    return error


def narrow_referrals_to_politie_and_ggz(flow: Flow) -> None:
    """Sign a bundle in which housing corporations may no longer refer; RR reloads it."""
    bundle = flow.pair.keys.bundle
    text = bundle.read_text()
    narrowed = text.replace(
        "phases: [aanmelding]\n    providers: *all_partners",
        "phases: [aanmelding]\n    providers: [politie, ggz]",
    )
    assert narrowed != text
    bundle.write_text(narrowed)
    signing.sign_bundle(bundle, flow.pair.keys.policy_key)
    policy = flow.pair.nodes[RR].parts.policy
    assert policy is not None and policy.check()


async def test_every_refused_referral_is_in_the_persons_inzage(flow: Flow) -> None:
    politie = flow.pair.fed.partner(RR, "politie-rr", "politie", force=True)
    corporatie = flow.pair.fed.partner(RR, "woonstad", "woningcorporatie", force=True)
    refusals = [
        (referral(flow, "k1", theme="geen-thema"), grpc.StatusCode.INVALID_ARGUMENT),
        (
            referral(flow, "k2", purpose=common_pb2.Purpose(processing_activity_id="zvh.onbekend")),
            grpc.StatusCode.PERMISSION_DENIED,
        ),
        (referral(flow, "k3", external_ref="R" * BIG), grpc.StatusCode.INVALID_ARGUMENT),
        (referral(flow, "k4", criteria=["a"] * 2), grpc.StatusCode.INVALID_ARGUMENT),
    ]
    async with flow.pair.channel(RR, politie) as channel:
        stub = partner_pb2_grpc.PartnerServiceStub(channel)
        for request, code in refusals:
            assert (await refusal(stub.SubmitReferral(request))).code() is code
    narrow_referrals_to_politie_and_ggz(flow)
    async with flow.pair.channel(RR, corporatie) as channel:
        denied = await refusal(
            partner_pb2_grpc.PartnerServiceStub(channel).SubmitReferral(referral(flow, "k5"))
        )
    assert denied.code() is grpc.StatusCode.PERMISSION_DENIED
    records = [r for r in await inzage(flow) if r.name == SUBMIT]
    assert len(records) == len(refusals) + 1
    assert {r.status for r in records} == {audit_pb2.SPAN_STATUS_ERROR}
    assert [r.requester.rsplit("/", 1)[1] for r in records] == ["politie-rr"] * 4 + ["woonstad"]
    assert records[-1].decision.outcome == common_pb2.DECISION_OUTCOME_DENY
    assert cases(flow) == 0


async def test_a_100kb_field_in_a_referral_is_refused_short_and_opens_no_case(flow: Flow) -> None:
    politie = flow.pair.fed.partner(RR, "politie-rr", "politie", force=True)
    big = "a" * BIG
    oversized: dict[str, Any] = {
        "idempotency_key": big,
        "theme": big,
        "external_ref": big,
        "purpose": common_pb2.Purpose(processing_activity_id=big),
        "criteria": [big],
        "reason_codes": [big],
    }
    async with flow.pair.channel(RR, politie) as channel:
        stub = partner_pb2_grpc.PartnerServiceStub(channel)
        for name, value in oversized.items():
            error = await refusal(stub.SubmitReferral(referral(flow, f"k-{name}", **{name: value})))
            assert error.code() is grpc.StatusCode.INVALID_ARGUMENT, name
            assert name.split("_")[0] in (error.details() or ""), name
        bad_subject = encrypt_subject("bsn", BSN, flow.y)
        bad_subject.b = b"\x01" * BIG
        error = await refusal(stub.SubmitReferral(referral(flow, "k-subject", subject=bad_subject)))
        assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert "subject" in (error.details() or "")
    assert cases(flow) == 0
    # Each refusal whose subject could be decrypted is in that person's inzage.
    records = [r for r in await inzage(flow) if r.name == SUBMIT]
    assert len(records) == len(oversized)
    assert {r.status for r in records} == {audit_pb2.SPAN_STATUS_ERROR}


async def open_task(flow: Flow, kind: partner_pb2.TaskKind.ValueType, org_id: str) -> PendingTask:
    """A task for ``org_id`` about the subject, open for a minute."""
    broker = flow.pair.nodes[RR].parts.tasks
    hit = kind == partner_pb2.TASK_KIND_HIT_QUERY
    task = partner_pb2.PartnerTask(
        kind=kind,
        purpose=PURPOSE,
        case_ref=common_pb2.CaseRef(node_id=RR, case_id="0" * 32),
        phase=common_pb2.PHASE_AANMELDING if hit else common_pb2.PHASE_CASUSOVERLEG,
        categories=["bekend" if hit else ANTECEDENTEN],
    )
    return await broker.send(org_id, task, subject=node_pseudonym(flow), timeout=60)


def oversize(request: Any, change: Callable[[Any], None]) -> Any:
    copy = type(request)()
    copy.CopyFrom(request)
    change(copy)
    return copy


async def test_a_100kb_field_in_an_answer_is_refused_short_and_leaves_the_task_open(
    flow: Flow,
) -> None:
    big = "a" * BIG
    hit_task = await open_task(flow, partner_pb2.TASK_KIND_HIT_QUERY, "ggz-rr")
    facts_task = await open_task(flow, partner_pb2.TASK_KIND_FACT_QUERY, "ggz-rr")
    hit = partner_pb2.AnswerHitRequest(
        task_id=hit_task.task.task_id,
        purpose=PURPOSE,
        case_ref=hit_task.task.case_ref,
        known=True,
        contact_handle="crisisdienst@ggz-rr.example",
    )
    fact = common_pb2.Fact(category=ANTECEDENTEN)
    fact.fields["aantal"].number = 2
    facts = partner_pb2.AnswerFactsRequest(
        task_id=facts_task.task.task_id,
        purpose=PURPOSE,
        case_ref=facts_task.task.case_ref,
        facts=[fact],
    )

    common: list[Callable[[Any], None]] = [
        lambda r: setattr(r, "task_id", big),
        lambda r: setattr(r.purpose, "processing_activity_id", big),
        lambda r: setattr(r.case_ref, "case_id", big),
        lambda r: setattr(r.case_ref, "node_id", big),
    ]
    bad_hits = [oversize(hit, c) for c in common]
    bad_hits.append(oversize(hit, lambda r: setattr(r, "contact_handle", big)))
    bad_facts = [oversize(facts, c) for c in common]
    bad_facts += [
        oversize(facts, lambda r: setattr(r.facts[0], "category", big)),
        oversize(facts, lambda r: setattr(r.facts[0].fields[big], "number", 1)),
        oversize(facts, lambda r: setattr(r.facts[0].fields["aantal"], "text", big)),
    ]
    ggz = flow.pair.fed.partner(RR, "ggz-rr", "ggz", force=True)
    async with flow.pair.channel(RR, ggz) as channel:
        stub = partner_pb2_grpc.PartnerServiceStub(channel)
        for request in bad_hits:
            error = await refusal(stub.AnswerHit(request))
            assert error.code() is grpc.StatusCode.INVALID_ARGUMENT, error.details()
        for request in bad_facts:
            error = await refusal(stub.AnswerFacts(request))
            assert error.code() is grpc.StatusCode.INVALID_ARGUMENT, error.details()
        broker = flow.pair.nodes[RR].parts.tasks
        for pending in (hit_task, facts_task):
            assert broker.claim(pending.task.task_id, "ggz-rr") is pending
            assert pending.answer is not None and not pending.answer.done()
        # Still open: the well-formed answers are taken and reach the asker.
        await stub.AnswerHit(hit)
        await stub.AnswerFacts(facts)
    assert await broker.wait(hit_task) == hit
    assert await broker.wait(facts_task) == facts


async def first(stream: Any) -> object:
    return await anext(aiter(stream))


async def test_a_bad_request_is_never_answered_unavailable_or_internal(flow: Flow) -> None:
    big = "a" * BIG
    subject = encrypt_subject("bsn", BSN, flow.y)
    garbage = common_pb2.EncryptedPseudonym(b=b"\x01" * 32, c=b"\x02" * 32, public_key=b"")
    p = partner_pb2
    calls: list[tuple[str, Any]] = [
        ("Pseudonymise", p.PseudonymiseRequest()),
        ("Pseudonymise", p.PseudonymiseRequest(purpose=PURPOSE, subjects=[subject] * 1001)),
        ("Pseudonymise", p.PseudonymiseRequest(purpose=PURPOSE, subjects=[garbage])),
        ("SubmitReferral", p.SubmitReferralRequest()),
        ("SubmitReferral", referral(flow, "k1", subject=garbage)),
        ("SubmitReferral", referral(flow, "k2", criteria=[f"c{i}" for i in range(1000)])),
        ("SubmitReferral", referral(flow, "k3", idempotency_key="")),
        ("GetCaseStatus", p.GetCaseStatusRequest()),
        (
            "GetCaseStatus",
            p.GetCaseStatusRequest(purpose=PURPOSE, case_ref=common_pb2.CaseRef(case_id=big)),
        ),
        (
            "GetCaseStatus",
            p.GetCaseStatusRequest(
                purpose=PURPOSE, case_ref=common_pb2.CaseRef(node_id=big, case_id="0" * 32)
            ),
        ),
        ("ReceiveTasks", p.ReceiveTasksRequest(kinds=[99])),
        ("ReceiveTasks", p.ReceiveTasksRequest(kinds=list(range(4, 20_000)))),
        ("AnswerHit", p.AnswerHitRequest()),
        ("AnswerHit", p.AnswerHitRequest(task_id=big)),
        ("AnswerFacts", p.AnswerFactsRequest()),
        ("AnswerFacts", p.AnswerFactsRequest(task_id="t" * 65)),
        ("AcknowledgeTask", p.AcknowledgeTaskRequest()),
        ("AcknowledgeTask", p.AcknowledgeTaskRequest(task_id=big)),
    ]
    politie = flow.pair.fed.partner(RR, "politie-rr", "politie", force=True)
    async with flow.pair.channel(RR, politie) as channel:
        stub = partner_pb2_grpc.PartnerServiceStub(channel)
        for method, request in calls:
            call = getattr(stub, method)(request)
            pending = first(call) if method == "ReceiveTasks" else call
            error = await refusal(pending)
            assert error.code() is grpc.StatusCode.INVALID_ARGUMENT, (method, error.details())
    assert cases(flow) == 0


async def test_a_refused_status_look_up_of_a_case_is_in_the_persons_inzage(flow: Flow) -> None:
    politie = flow.pair.fed.partner(RR, "politie-rr", "politie", force=True)
    ggz = flow.pair.fed.partner(RR, "ggz-rr", "ggz", force=True)
    async with flow.pair.channel(RR, politie) as channel:
        stub = partner_pb2_grpc.PartnerServiceStub(channel)
        made = await stub.SubmitReferral(referral(flow, "k1"))
        other = common_pb2.Purpose(processing_activity_id="zvh.onbekend")
        denied = await refusal(
            stub.GetCaseStatus(
                partner_pb2.GetCaseStatusRequest(purpose=other, case_ref=made.case_ref)
            )
        )
    async with flow.pair.channel(RR, ggz) as channel:
        hidden = await refusal(
            partner_pb2_grpc.PartnerServiceStub(channel).GetCaseStatus(
                partner_pb2.GetCaseStatusRequest(purpose=PURPOSE, case_ref=made.case_ref)
            )
        )
    assert denied.code() is grpc.StatusCode.PERMISSION_DENIED
    assert hidden.code() is grpc.StatusCode.NOT_FOUND
    records = [r for r in await inzage(flow) if r.name.endswith("/GetCaseStatus")]
    assert [(r.requester.rsplit("/", 1)[1], r.status) for r in records] == [
        ("politie-rr", audit_pb2.SPAN_STATUS_ERROR),
        ("ggz-rr", audit_pb2.SPAN_STATUS_ERROR),
    ]


async def test_a_partner_whose_org_id_is_a_node_id_is_not_that_node(flow: Flow) -> None:
    """HL hands a case over to RR; a partner of RR whose organisation id is "zvh-haaglanden"
    is not HL, so it cannot read that case's status as its referrer."""
    async with flow.pair.channel(RR, flow.pair.fed.node(HL, force=True)) as channel:
        taken = await federation_pb2_grpc.FederationServiceStub(channel).TransferCase(
            federation_pb2.TransferCaseRequest(
                purpose=PURPOSE,
                case_ref=common_pb2.CaseRef(node_id=HL, case_id="d" * 32),
                subject=flow.subject_at(RR, BSN),
                theme="complexe-casuistiek",
                phase=common_pb2.PHASE_CASUSOVERLEG,
                idempotency_key="verhuisd-1",
            ),
            timeout=10,
        )
    assert taken.created
    case = flow.pair.nodes[RR].parts.registry.get(taken.case_ref.case_id)
    assert (case.referrer_org_id, case.referrer_org_type) == (HL, "zvh")
    impostor = flow.pair.fed.partner(RR, HL, "gemeente", force=True)
    async with flow.pair.channel(RR, impostor) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await partner_pb2_grpc.PartnerServiceStub(channel).GetCaseStatus(
                partner_pb2.GetCaseStatusRequest(purpose=PURPOSE, case_ref=taken.case_ref),
                timeout=10,
            )
    assert err.value.code() is grpc.StatusCode.NOT_FOUND
    refused = [
        r
        for r in await inzage(flow)
        if r.name.endswith("/GetCaseStatus") and r.status == audit_pb2.SPAN_STATUS_ERROR
    ]
    assert [r.requester for r in refused] == [f"schakel://partner/{RR}/{HL}"]


async def test_a_partner_sees_the_phase_the_regie_and_only_its_own_participation(
    flow: Flow,
) -> None:
    """Not the other organisations (GGZ taking part is care information), hits or tags."""
    politie = flow.pair.fed.partner(RR, "politie-rr", "politie", force=True)
    gemeente = flow.pair.fed.partner(RR, "gemeente-rr", "gemeente", force=True)
    async with flow.pair.channel(RR, politie) as channel:
        made = await partner_pb2_grpc.PartnerServiceStub(channel).SubmitReferral(
            referral(flow, "k1")
        )
    await flow.pair.nodes[RR].parts.tasks.settle()
    named = [
        common_pb2.Participant(org_id=org, org_type=kind, node_id=node)
        for org, kind, node in (("gemeente-rr", "gemeente", RR), ("ggz-rr", "ggz", RR))
    ]
    ref = made.case_ref
    officer = flow.pair.fed.officer(RR, "procesregisseur")
    async with flow.pair.channel(RR, officer) as channel:
        regie = case_pb2_grpc.CaseServiceStub(channel)
        await regie.StartTriage(case_pb2.StartTriageRequest(purpose=PURPOSE, case_ref=ref))
        await regie.Triage(
            case_pb2.TriageRequest(
                purpose=PURPOSE, case_ref=ref, accept=True, reason_code="ok", participants=named
            )
        )
        full = await regie.SetBottlenecks(
            case_pb2.SetBottlenecksRequest(purpose=PURPOSE, case_ref=ref, tags=["wachtlijst-ggz"])
        )
    flow.pair.nodes[RR].parts.registry.record_hit(
        ref.case_id, Hit("ggz-rr", RR, "crisisdienst@ggz-rr.example")
    )
    # The procesregisseur keeps the whole view.
    assert list(full.participants) == named and list(full.bottlenecks) == ["wachtlijst-ggz"]
    contact = flow.pair.nodes[RR].parts.config.cases.contact_handle
    assert contact
    seen = {}
    for who in (politie, gemeente):
        async with flow.pair.channel(RR, who) as channel:
            seen[who.identity.org_id] = await partner_pb2_grpc.PartnerServiceStub(
                channel
            ).GetCaseStatus(partner_pb2.GetCaseStatusRequest(purpose=PURPOSE, case_ref=ref))
    for org_id, status in seen.items():
        assert status.phase == common_pb2.PHASE_CASUSOVERLEG, org_id
        assert status.regie_contact == contact, org_id
        assert not status.hits and not status.bottlenecks, org_id
        assert b"ggz" not in status.SerializeToString(), org_id
    # The referrer takes no part: no participant list; its own reference only for it.
    assert list(seen["politie-rr"].participants) == []
    assert seen["politie-rr"].external_ref == "POL-2026-0001"
    assert list(seen["gemeente-rr"].participants) == [named[0]]
    assert seen["gemeente-rr"].external_ref == ""
