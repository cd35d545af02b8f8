"""The phase gates of the national process through the API: each CaseService action, each phase.

A case is brought to each phase; then each action is called over mTLS as
the procesregisseur. Where the process allows it, the call succeeds and the
case ends in the phase written out below. Everywhere else it is refused
with FAILED_PRECONDITION, the refusal is in the person's audit records
(status ERROR, with the subject and the case), and the case is unchanged.
The table is written out by hand from the process, not read from the code.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import grpc
import pytest
from schakel.v1 import audit_pb2, case_pb2, case_pb2_grpc, common_pb2

from policy.vocabulary import Phase
from tests.support.flow import Flow
from tests.support.pki import HL, RR
from tests.support.regie import PURPOSE, about, case_in, case_ref, node_pseudonym, regie

A, T, C, AF = Phase.AANMELDING, Phase.TRIAGE, Phase.CASUSOVERLEG, Phase.AFSCHALING
OPEN = frozenset({A, T, C})

Call = Callable[[case_pb2_grpc.CaseServiceStub, common_pb2.CaseRef], Awaitable[object]]

CALLS: dict[str, tuple[str, Call]] = {
    "start triage": (
        "StartTriage",
        lambda s, ref: s.StartTriage(case_pb2.StartTriageRequest(purpose=PURPOSE, case_ref=ref)),
    ),
    "accept": (
        "Triage",
        lambda s, ref: s.Triage(
            case_pb2.TriageRequest(
                purpose=PURPOSE,
                case_ref=ref,
                accept=True,
                reason_code="ontvankelijk",
                participants=[
                    common_pb2.Participant(org_id="gemeente-rr", org_type="gemeente", node_id=RR)
                ],
            )
        ),
    ),
    "reject": (
        "Triage",
        lambda s, ref: s.Triage(
            case_pb2.TriageRequest(
                purpose=PURPOSE, case_ref=ref, accept=False, reason_code="buiten-doelgroep"
            )
        ),
    ),
    "add a participant": (
        "AddParticipant",
        lambda s, ref: s.AddParticipant(
            case_pb2.AddParticipantRequest(
                purpose=PURPOSE,
                case_ref=ref,
                participant=common_pb2.Participant(
                    org_id="gemeente-rr", org_type="gemeente", node_id=RR
                ),
            )
        ),
    ),
    "record a ground": (
        "RecordGround",
        lambda s, ref: s.RecordGround(
            case_pb2.RecordGroundRequest(
                purpose=PURPOSE,
                case_ref=ref,
                kind=case_pb2.GROUND_KIND_CONSENT,
                category="zorg.in_zorg",
                provider_org_id="ggz-rr",
                evidence_ref="toestemming-1",
            )
        ),
    ),
    "run hit/no-hit": (
        "RunHitNoHit",
        lambda s, ref: s.RunHitNoHit(
            case_pb2.RunHitNoHitRequest(purpose=PURPOSE, case_ref=ref, deadline_ms=300)
        ),
    ),
    "start an uitvraag": (
        "StartUitvraag",
        lambda s, ref: s.StartUitvraag(
            case_pb2.StartUitvraagRequest(
                purpose=PURPOSE,
                case_ref=ref,
                categories=["justitie.antecedenten"],
                deadline_ms=300,
            )
        ),
    ),
    "set bottleneck tags": (
        "SetBottlenecks",
        lambda s, ref: s.SetBottlenecks(
            case_pb2.SetBottlenecksRequest(purpose=PURPOSE, case_ref=ref, tags=["huisvesting"])
        ),
    ),
    "close": (
        "CloseCase",
        lambda s, ref: s.CloseCase(
            case_pb2.CloseCaseRequest(purpose=PURPOSE, case_ref=ref, outcome="doelen-bereikt")
        ),
    ),
    "hand over": (
        "HandOverCase",
        lambda s, ref: s.HandOverCase(
            case_pb2.HandOverCaseRequest(
                purpose=PURPOSE,
                case_ref=ref,
                target_node_id=HL,
                idempotency_key=f"verhuizing-{ref.case_id[:8]}",
                reason_code="betrokkene-verhuisd",
            )
        ),
    ),
}

# The national process: the phases each action is allowed in, and the phase it leaves
# the case in (None: unchanged).
GATES: dict[str, tuple[frozenset[Phase], Phase | None]] = {
    "start triage": (frozenset({A}), T),
    "accept": (frozenset({T}), C),
    "reject": (frozenset({T}), AF),
    "add a participant": (frozenset({C}), None),
    "record a ground": (OPEN, None),
    "run hit/no-hit": (frozenset({A, T}), None),
    "start an uitvraag": (frozenset({C}), None),
    "set bottleneck tags": (frozenset(Phase), None),
    "close": (frozenset({C}), AF),
    "hand over": (OPEN, AF),
}


def test_every_case_service_action_has_a_gate() -> None:
    served = set(case_pb2.DESCRIPTOR.services_by_name["CaseService"].methods_by_name)
    assert {method for method, _ in CALLS.values()} == served
    assert set(GATES) == set(CALLS)


@pytest.mark.parametrize("action", sorted(CALLS))
async def test_each_action_in_each_phase(flow: Flow, action: str) -> None:
    method, call = CALLS[action]
    allowed, to = GATES[action]
    registry = flow.pair.nodes[RR].parts.registry
    subject = node_pseudonym(flow)
    async with regie(flow) as stub:
        for phase in Phase:
            case = case_in(flow, phase, key=f"{action.replace(' ', '-')}-{phase.value}")
            before = len(about(flow, subject))
            if phase in allowed:
                await call(stub, case_ref(case))
                assert registry.get(case.id).phase is (to or phase), (action, phase)
                continue
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await call(stub, case_ref(case))
            where = (action, phase.value, err.value.details())
            assert err.value.code() is grpc.StatusCode.FAILED_PRECONDITION, where
            assert registry.get(case.id) == case, where
            added = about(flow, subject)[before:]
            assert added, where
            refusal = added[-1]
            assert refusal.status == audit_pb2.SPAN_STATUS_ERROR, where
            assert refusal.name == f"schakel.v1.CaseService/{method}", where
            assert refusal.case_ref.case_id == case.id, where
            assert refusal.phase == phase.to_proto(), where
