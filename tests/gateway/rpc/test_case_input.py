"""Malformed CaseService requests: a short INVALID_ARGUMENT, audited, and nothing changed."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import grpc
import pytest
import sqlalchemy as sa
from schakel.v1 import audit_pb2, case_pb2, case_pb2_grpc, common_pb2

from gateway.audit.records import decode
from gateway.audit.store import iter_leaves
from gateway.cases.tables import cases
from tests.support.flow import Flow
from tests.support.pki import HL, RR
from tests.support.regie import PURPOSE, case_ref, open_case, regie

BIG = "x" * 100_000
"""A 100 kB value for a string field."""

Call = Callable[[case_pb2_grpc.CaseServiceStub], Awaitable[object]]


def records_since(flow: Flow, index: int) -> list[audit_pb2.AuditRecord]:
    with flow.pair.nodes[RR].parts.engine.connect() as conn:
        return [decode(d) for i, _, d in iter_leaves(conn, index) if d is not None and i >= index]


async def refused_as_invalid(stub: case_pb2_grpc.CaseServiceStub, call: Call, what: str) -> str:
    """Make ``call``: INVALID_ARGUMENT with a message under 1 KB, which it returns."""
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call(stub)
    details = err.value.details() or ""
    assert err.value.code() is grpc.StatusCode.INVALID_ARGUMENT, (what, err.value.code(), details)
    assert 0 < len(details.encode()) < 1024, (what, len(details))
    return details


def requests(ref: common_pb2.CaseRef, purpose: common_pb2.Purpose) -> dict[str, Call]:
    """One well-formed request per CaseService method, for a case in casusoverleg."""
    participant = common_pb2.Participant(org_id="gemeente-rr", org_type="gemeente", node_id=RR)
    return {
        "Triage": lambda s: s.Triage(
            case_pb2.TriageRequest(
                purpose=purpose,
                case_ref=ref,
                accept=True,
                reason_code="ontvankelijk",
                participants=[participant],
            )
        ),
        "AddParticipant": lambda s: s.AddParticipant(
            case_pb2.AddParticipantRequest(purpose=purpose, case_ref=ref, participant=participant)
        ),
        "RecordGround": lambda s: s.RecordGround(
            case_pb2.RecordGroundRequest(
                purpose=purpose,
                case_ref=ref,
                kind=case_pb2.GROUND_KIND_CONSENT,
                category="zorg.in_zorg",
                provider_org_id="ggz-rr",
                evidence_ref="toestemming-1",
            )
        ),
        "RunHitNoHit": lambda s: s.RunHitNoHit(
            case_pb2.RunHitNoHitRequest(purpose=purpose, case_ref=ref)
        ),
        "StartUitvraag": lambda s: s.StartUitvraag(
            case_pb2.StartUitvraagRequest(
                purpose=purpose, case_ref=ref, categories=["justitie.antecedenten"]
            )
        ),
        "SetBottlenecks": lambda s: s.SetBottlenecks(
            case_pb2.SetBottlenecksRequest(purpose=purpose, case_ref=ref, tags=["huisvesting"])
        ),
        "CloseCase": lambda s: s.CloseCase(
            case_pb2.CloseCaseRequest(purpose=purpose, case_ref=ref, outcome="doelen-bereikt")
        ),
        "HandOverCase": lambda s: s.HandOverCase(
            case_pb2.HandOverCaseRequest(
                purpose=purpose,
                case_ref=ref,
                target_node_id=HL,
                idempotency_key="verhuizing-1",
                reason_code="betrokkene-verhuisd",
            )
        ),
    }


def big_fields(ref: common_pb2.CaseRef) -> dict[str, Call]:
    """A 100 kB value in each string field that is not the purpose or the case reference."""

    def participant(**big: str) -> common_pb2.Participant:
        fields = {"org_id": "gemeente-rr", "org_type": "gemeente", "node_id": RR} | big
        return common_pb2.Participant(**fields)

    def triage(reason: str = "ontvankelijk", **big: str) -> Call:
        return lambda s: s.Triage(
            case_pb2.TriageRequest(
                purpose=PURPOSE,
                case_ref=ref,
                accept=True,
                reason_code=reason,
                participants=[participant(**big)],
            )
        )

    def add(**big: str) -> Call:
        return lambda s: s.AddParticipant(
            case_pb2.AddParticipantRequest(
                purpose=PURPOSE, case_ref=ref, participant=participant(**big)
            )
        )

    def ground(**big: str) -> Call:
        fields = {
            "category": "zorg.in_zorg",
            "provider_org_id": "ggz-rr",
            "evidence_ref": "toestemming-1",
        } | big
        return lambda s: s.RecordGround(
            case_pb2.RecordGroundRequest(
                purpose=PURPOSE, case_ref=ref, kind=case_pb2.GROUND_KIND_CONSENT, **fields
            )
        )

    def hand_over(**big: str) -> Call:
        fields = {
            "target_node_id": HL,
            "idempotency_key": "verhuizing-1",
            "reason_code": "betrokkene-verhuisd",
        } | big
        return lambda s: s.HandOverCase(
            case_pb2.HandOverCaseRequest(purpose=PURPOSE, case_ref=ref, **fields)
        )

    return {
        "Triage.reason_code": triage(BIG),
        "Triage.participants.org_id": triage(org_id=BIG),
        "Triage.participants.org_type": triage(org_type=BIG),
        "Triage.participants.node_id": triage(node_id=BIG),
        "AddParticipant.participant.org_id": add(org_id=BIG),
        "AddParticipant.participant.org_type": add(org_type=BIG),
        "AddParticipant.participant.node_id": add(node_id=BIG),
        "RecordGround.category": ground(category=BIG),
        "RecordGround.provider_org_id": ground(provider_org_id=BIG),
        "RecordGround.evidence_ref": ground(evidence_ref=BIG),
        "StartUitvraag.categories": lambda s: s.StartUitvraag(
            case_pb2.StartUitvraagRequest(purpose=PURPOSE, case_ref=ref, categories=[BIG])
        ),
        "SetBottlenecks.tags": lambda s: s.SetBottlenecks(
            case_pb2.SetBottlenecksRequest(purpose=PURPOSE, case_ref=ref, tags=[BIG])
        ),
        "CloseCase.outcome": lambda s: s.CloseCase(
            case_pb2.CloseCaseRequest(purpose=PURPOSE, case_ref=ref, outcome=BIG)
        ),
        "HandOverCase.target_node_id": hand_over(target_node_id=BIG),
        "HandOverCase.idempotency_key": hand_over(idempotency_key=BIG),
        "HandOverCase.reason_code": hand_over(reason_code=BIG),
    }


async def test_a_100_kb_field_is_a_short_invalid_argument_and_changes_nothing(flow: Flow) -> None:
    case = open_case(flow, accepted=True)
    ref = case_ref(case)
    rr = flow.pair.nodes[RR].parts
    before = rr.audit.head().size
    calls = big_fields(ref)
    for method, call in requests(ref, common_pb2.Purpose(processing_activity_id=BIG)).items():
        calls[f"{method}.purpose"] = call
    for method, call in requests(common_pb2.CaseRef(node_id=BIG, case_id=case.id), PURPOSE).items():
        calls[f"{method}.case_ref.node_id"] = call
    for method, call in requests(common_pb2.CaseRef(node_id=RR, case_id=BIG), PURPOSE).items():
        calls[f"{method}.case_ref.case_id"] = call
    async with regie(flow) as stub:
        for what, call in calls.items():
            await refused_as_invalid(stub, call, what)
    assert rr.registry.get(case.id) == case
    assert rr.registry.transfer_of(case.id) is None
    added = records_since(flow, before)
    assert [r.status for r in added] == [audit_pb2.SPAN_STATUS_ERROR] * len(calls), (
        "one refusal record per call, and nothing recorded as done"
    )
    with flow.pair.nodes[HL].parts.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(cases)).scalar_one() == 0


async def test_deadlines_out_of_range_are_invalid_arguments(flow: Flow) -> None:
    """RunHitNoHit with deadline_ms=1 was an INTERNAL failure; it asks nobody now."""
    fresh = case_ref(open_case(flow))
    accepted = case_ref(open_case(flow, key="ref-2", accepted=True))
    before = flow.pair.nodes[RR].parts.audit.head().size
    async with regie(flow) as stub:
        for deadline in (1, 99, 30_001, 2**32 - 1):
            details = await refused_as_invalid(
                stub,
                lambda s, d=deadline: s.RunHitNoHit(  # type: ignore[misc]
                    case_pb2.RunHitNoHitRequest(purpose=PURPOSE, case_ref=fresh, deadline_ms=d)
                ),
                f"RunHitNoHit deadline_ms={deadline}",
            )
            assert "deadline_ms" in details
            details = await refused_as_invalid(
                stub,
                lambda s, d=deadline: s.StartUitvraag(  # type: ignore[misc]
                    case_pb2.StartUitvraagRequest(
                        purpose=PURPOSE,
                        case_ref=accepted,
                        categories=["justitie.antecedenten"],
                        deadline_ms=d,
                    )
                ),
                f"StartUitvraag deadline_ms={deadline}",
            )
            assert "deadline_ms" in details
        added = records_since(flow, before)
        assert {r.status for r in added} == {audit_pb2.SPAN_STATUS_ERROR}, "nobody was asked"
        answer = await stub.RunHitNoHit(
            case_pb2.RunHitNoHitRequest(purpose=PURPOSE, case_ref=fresh, deadline_ms=100)
        )
    assert answer.case_ref == fresh


async def test_unknown_enums_and_too_many_entries_are_invalid_arguments(flow: Flow) -> None:
    fresh = open_case(flow)
    accepted = open_case(flow, key="ref-2", accepted=True)
    registry = flow.pair.nodes[RR].parts.registry
    many = [
        common_pb2.Participant(org_id=f"gemeente-{i}", org_type="gemeente", node_id=RR)
        for i in range(1000)
    ]
    calls: dict[str, Call] = {
        "ground kind 99": lambda s: s.RecordGround(
            case_pb2.RecordGroundRequest(
                purpose=PURPOSE,
                case_ref=case_ref(accepted),
                kind=99,  # type: ignore[arg-type]
                category="zorg.in_zorg",
                provider_org_id="ggz-rr",
                evidence_ref="toestemming-1",
            )
        ),
        "1000 participants": lambda s: s.Triage(
            case_pb2.TriageRequest(
                purpose=PURPOSE,
                case_ref=case_ref(fresh),
                accept=True,
                reason_code="ontvankelijk",
                participants=many,
            )
        ),
        "1000 categories": lambda s: s.StartUitvraag(
            case_pb2.StartUitvraagRequest(
                purpose=PURPOSE,
                case_ref=case_ref(accepted),
                categories=[f"categorie.{i}" for i in range(1000)],
            )
        ),
        "1000 tags": lambda s: s.SetBottlenecks(
            case_pb2.SetBottlenecksRequest(
                purpose=PURPOSE, case_ref=case_ref(accepted), tags=[f"tag-{i}" for i in range(1000)]
            )
        ),
    }
    async with regie(flow) as stub:
        for what, call in calls.items():
            await refused_as_invalid(stub, call, what)
    assert registry.get(fresh.id) == fresh
    assert registry.get(accepted.id) == accepted
