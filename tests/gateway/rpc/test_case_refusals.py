"""Every refused CaseService action is in the person's inzage: audited with the subject, ERROR."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import grpc
import pytest
from schakel.v1 import audit_pb2, case_pb2, common_pb2

from tests.support.flow import Flow
from tests.support.pki import HL, RR
from tests.support.regie import PURPOSE, about, case_ref, node_pseudonym, open_case, regie

Call = Callable[[], Awaitable[object]]


async def refused_and_recorded(
    flow: Flow, call: Call, method: str, case_id: str, code: grpc.StatusCode
) -> audit_pb2.AuditRecord:
    """Make ``call``; it is refused with ``code`` and its ERROR record is about the subject."""
    subject = node_pseudonym(flow)
    before = len(about(flow, subject))
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call()
    assert err.value.code() is code, (method, err.value.details())
    added = about(flow, subject)[before:]
    assert added, f"{method}: the refusal is not in the person's audit records"
    last = added[-1]
    assert last.status == audit_pb2.SPAN_STATUS_ERROR, method
    assert last.name == f"schakel.v1.CaseService/{method}"
    assert last.data_subject_id == subject
    assert last.case_ref.case_id == case_id
    return last


async def test_refused_case_actions_are_in_the_persons_audit_records(flow: Flow) -> None:
    """Malformed input, another purpose, the wrong phase and a policy refusal alike."""
    open_ = open_case(flow, accepted=True)
    ref = case_ref(open_)
    registry = flow.pair.nodes[RR].parts.registry
    async with regie(flow) as stub:
        refusals: list[tuple[Call, str, grpc.StatusCode]] = [
            (
                lambda: stub.AddParticipant(
                    case_pb2.AddParticipantRequest(
                        purpose=PURPOSE,
                        case_ref=ref,
                        participant=common_pb2.Participant(
                            org_id="bakkerij-rr", org_type="bakkerij", node_id=RR
                        ),
                    )
                ),
                "AddParticipant",
                grpc.StatusCode.INVALID_ARGUMENT,
            ),
            (
                lambda: stub.RecordGround(
                    case_pb2.RecordGroundRequest(
                        purpose=PURPOSE,
                        case_ref=ref,
                        kind=case_pb2.GROUND_KIND_CONSENT,
                        category="zorg.onbekend",
                        provider_org_id="ggz-rr",
                        evidence_ref="toestemming-1",
                    )
                ),
                "RecordGround",
                grpc.StatusCode.INVALID_ARGUMENT,
            ),
            (
                lambda: stub.CloseCase(
                    case_pb2.CloseCaseRequest(purpose=PURPOSE, case_ref=ref, outcome="klaar")
                ),
                "CloseCase",
                grpc.StatusCode.INVALID_ARGUMENT,
            ),
            (
                lambda: stub.SetBottlenecks(
                    case_pb2.SetBottlenecksRequest(purpose=PURPOSE, case_ref=ref, tags=["geld"])
                ),
                "SetBottlenecks",
                grpc.StatusCode.INVALID_ARGUMENT,
            ),
            (
                lambda: stub.RunHitNoHit(
                    case_pb2.RunHitNoHitRequest(purpose=PURPOSE, case_ref=ref)
                ),
                "RunHitNoHit",
                grpc.StatusCode.FAILED_PRECONDITION,
            ),
            (
                lambda: stub.Triage(
                    case_pb2.TriageRequest(
                        purpose=common_pb2.Purpose(processing_activity_id="zvh.huiselijk-geweld"),
                        case_ref=ref,
                    )
                ),
                "Triage",
                grpc.StatusCode.PERMISSION_DENIED,
            ),
        ]
        for call, method, code in refusals:
            await refused_and_recorded(flow, call, method, open_.id, code)
        assert registry.get(open_.id) == open_, "no refusal changed the case"

        registry.close(open_.id, outcome="doelen-bereikt", retention_days=30)
        closed = registry.get(open_.id)
        for call, method in [
            (lambda: stub.Triage(case_pb2.TriageRequest(purpose=PURPOSE, case_ref=ref)), "Triage"),
            (
                lambda: stub.StartUitvraag(
                    case_pb2.StartUitvraagRequest(
                        purpose=PURPOSE, case_ref=ref, categories=["justitie.antecedenten"]
                    )
                ),
                "StartUitvraag",
            ),
        ]:
            await refused_and_recorded(
                flow, call, method, open_.id, grpc.StatusCode.FAILED_PRECONDITION
            )
        assert registry.get(open_.id) == closed

        # The signalling activity carries no personal data, so no rule lets its case move.
        signalling = open_case(flow, key="ref-2", activity="zvh.signalering")
        request = case_pb2.HandOverCaseRequest(
            purpose=common_pb2.Purpose(processing_activity_id="zvh.signalering"),
            case_ref=case_ref(signalling),
            target_node_id=HL,
            idempotency_key="verhuizing-1",
            reason_code="betrokkene-verhuisd",
        )
        record = await refused_and_recorded(
            flow,
            lambda: stub.HandOverCase(request),
            "HandOverCase",
            signalling.id,
            grpc.StatusCode.PERMISSION_DENIED,
        )
    assert record.decision.outcome == common_pb2.DECISION_OUTCOME_DENY
    assert registry.get(signalling.id) == signalling
