"""CaseService: the procesregisseur's actions on the cases of this node.

The interceptor lets only this node's procesregisseur in. Each method reads
its request, hands it to the flow of its process step and answers with what
the flow returns; the flows check the case, its purpose and phase, audit,
and raise a :class:`~gateway.errors.SchakelError` for a refusal, which the
interceptor answers (:mod:`gateway.rpc.status`). Every method runs holding
its case (:mod:`gateway.caselocks`), so actions on one case follow
each other.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import grpc
from schakel.v1 import case_pb2, case_pb2_grpc, common_pb2, partner_pb2

from gateway.cases import Case, Participant, case_status
from gateway.flows import afschaling, bottlenecks, hitnohit, overdracht, triage, uitvraag
from gateway.flows.delivery import participant_proto
from gateway.flows.regie import CaseCall
from gateway.rpc.auth import current_identity

if TYPE_CHECKING:
    from gateway.parts import NodeParts

Context = grpc.aio.ServicerContext[Any, Any]


class _CaseRequest(Protocol):
    @property
    def purpose(self) -> common_pb2.Purpose: ...
    @property
    def case_ref(self) -> common_pb2.CaseRef: ...


Request = TypeVar("Request", bound=_CaseRequest)
Reply = TypeVar("Reply")


def _one_step(
    method: Callable[[CaseService, Request, Context], Awaitable[Reply]],
) -> Callable[[CaseService, Request, Context], Awaitable[Reply]]:
    """Run ``method`` holding the case its request names, after the actions before it."""

    @functools.wraps(method)
    async def run(self: CaseService, request: Request, context: Context) -> Reply:
        async with self.parts.case_locks.hold(request.case_ref.case_id):
            return await method(self, request, context)

    return run


def _call(method: str, request: _CaseRequest) -> CaseCall:
    return CaseCall(
        caller=current_identity(),
        method=method,
        purpose=request.purpose.processing_activity_id,
        node_id=request.case_ref.node_id,
        case_id=request.case_ref.case_id,
    )


def _participant(p: common_pb2.Participant) -> Participant:
    return Participant(org_id=p.org_id, org_type=p.org_type, node_id=p.node_id)


class CaseService(case_pb2_grpc.CaseServiceServicer):
    """The regie's endpoint for triage, participants, grounds, rounds, uitvraag and closure."""

    def __init__(self, parts: NodeParts) -> None:
        self.parts = parts

    def _status(
        self, case: Case, undelivered: tuple[Participant, ...] = ()
    ) -> partner_pb2.CaseStatus:
        status = case_status(case, self.parts.node_id, for_referrer=False)
        status.undelivered.extend(participant_proto(p) for p in undelivered)
        return status

    @_one_step
    async def StartTriage(  # noqa: N802 - gRPC method name
        self, request: case_pb2.StartTriageRequest, context: Context
    ) -> partner_pb2.CaseStatus:
        """Move a case from aanmelding into triage."""
        case = await triage.start_triage(self.parts, _call("StartTriage", request))
        return self._status(case)

    @_one_step
    async def Triage(  # noqa: N802 - gRPC method name
        self, request: case_pb2.TriageRequest, context: Context
    ) -> partner_pb2.CaseStatus:
        """Accept (with participants -> casusoverleg) or reject (-> afschaling) a case in triage."""
        case = await triage.triage(
            self.parts,
            _call("Triage", request),
            accept=request.accept,
            reason_code=request.reason_code,
            participants=[_participant(p) for p in request.participants],
        )
        return self._status(case)

    @_one_step
    async def AddParticipant(  # noqa: N802 - gRPC method name
        self, request: case_pb2.AddParticipantRequest, context: Context
    ) -> partner_pb2.CaseStatus:
        """Add one participant to a case in casusoverleg."""
        case = await triage.add_participant(
            self.parts, _call("AddParticipant", request), _participant(request.participant)
        )
        return self._status(case)

    @_one_step
    async def RecordGround(  # noqa: N802 - gRPC method name
        self, request: case_pb2.RecordGroundRequest, context: Context
    ) -> partner_pb2.CaseStatus:
        """Record consent, a legal duty or a conflict van plichten for a category and provider."""
        case = await triage.record_ground(
            self.parts,
            _call("RecordGround", request),
            kind=request.kind,
            category=request.category,
            provider_org_id=request.provider_org_id,
            evidence_ref=request.evidence_ref,
        )
        return self._status(case)

    @_one_step
    async def RunHitNoHit(  # noqa: N802 - gRPC method name
        self, request: case_pb2.RunHitNoHitRequest, context: Context
    ) -> case_pb2.HitNoHitResult:
        """Ask local partners and peer nodes whether they know the subject.

        ``deadline_ms`` is 0 (2000) or 100-30000 (:mod:`gateway.flows.regie`).
        """
        result = await hitnohit.ask_again(
            self.parts, _call("RunHitNoHit", request), request.deadline_ms
        )
        return result.to_proto(request.case_ref)

    @_one_step
    async def StartUitvraag(  # noqa: N802 - gRPC method name
        self, request: case_pb2.StartUitvraagRequest, context: Context
    ) -> case_pb2.UitvraagResult:
        """Ask the participants for facts under policy and deliver the minimised facts.

        ``deadline_ms`` is 0 (5000) or 100-30000 (:mod:`gateway.flows.regie`).
        """
        return await uitvraag.start_uitvraag(
            self.parts,
            _call("StartUitvraag", request),
            list(request.categories),
            request.deadline_ms,
        )

    @_one_step
    async def SetBottlenecks(  # noqa: N802 - gRPC method name
        self, request: case_pb2.SetBottlenecksRequest, context: Context
    ) -> partner_pb2.CaseStatus:
        """Replace the case's bottleneck tags (signalering)."""
        case = await bottlenecks.set_bottlenecks(
            self.parts, _call("SetBottlenecks", request), list(request.tags)
        )
        return self._status(case)

    @_one_step
    async def CloseCase(  # noqa: N802 - gRPC method name
        self, request: case_pb2.CloseCaseRequest, context: Context
    ) -> partner_pb2.CaseStatus:
        """Close (afschaling) with an outcome, then tell every participant the outcome only."""
        closed = await afschaling.close_case(
            self.parts, _call("CloseCase", request), request.outcome
        )
        return self._status(closed.case, closed.undelivered)

    @_one_step
    async def HandOverCase(  # noqa: N802 - gRPC method name
        self, request: case_pb2.HandOverCaseRequest, context: Context
    ) -> case_pb2.HandOverResult:
        """Hand an open case over to another node (overdracht)."""
        done = await overdracht.hand_over(
            self.parts,
            _call("HandOverCase", request),
            target=request.target_node_id,
            idempotency_key=request.idempotency_key,
            reason_code=request.reason_code,
        )
        return case_pb2.HandOverResult(
            remote_case_ref=done.remote_case_ref,
            created=done.created,
            status=self._status(done.case, done.undelivered),
        )
