"""CaseService: the procesregisseur's actions on the cases of this node.

The interceptor lets only this node's procesregisseur in. Every request
names a case of this node and the case's own processing activity (purpose
limitation). Each action is audited with the subject's node pseudonym
before its effect is visible: the record is written first, and if the
registry then refuses the change a second record (status ERROR) says so.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import grpc
from schakel.v1 import case_pb2, case_pb2_grpc, common_pb2, partner_pb2

from gateway.cases import Case, CaseError, GroundKind, Participant, case_status
from gateway.cases.errors import CaseInputError
from gateway.flows.bottlenecks import BottleneckTagError, set_bottlenecks
from gateway.flows.crossing import Crossing, append, commit
from gateway.flows.delivery import deliver
from gateway.flows.hitnohit import (
    DEFAULT_DEADLINE_SECONDS,
    MAX_DEADLINE_SECONDS,
    ROUND_METHOD,
    RoundError,
    run_round,
)
from gateway.flows.overdracht import HandOverError, hand_over
from gateway.flows.uitvraag import UitvraagError, as_recipient, run_uitvraag
from gateway.logging import get_logger
from gateway.rpc.auth import current_identity
from gateway.rpc.status import status_of
from policy.evaluator import Outcome, Request
from policy.minimise import FactRefusedError, minimise_facts

if TYPE_CHECKING:
    from gateway.parts import NodeParts
    from policy.model import Activity, Bundle

Context = grpc.aio.ServicerContext[Any, Any]

SERVICE = "schakel.v1.CaseService"
OUTCOME_CATEGORY = "uitkomst"
REJECTED_REASON = "niet-ontvankelijk"
UITVRAAG_DEFAULT_MS = 5000

log = get_logger("case_service")


def _retention_days(activity: Activity) -> int:
    # The registry keeps facts and links on one clock: the longer profile wins.
    return max(activity.retention.facts_days, activity.retention.links_days)


class CaseService(case_pb2_grpc.CaseServiceServicer):
    """The regie's endpoint for triage, participants, grounds, rounds, uitvraag and closure."""

    def __init__(self, parts: NodeParts) -> None:
        self.parts = parts

    # -- shared checks -------------------------------------------------------

    async def _bundle(self, context: Context) -> Bundle:
        if self.parts.policy is None:
            await context.abort(
                grpc.StatusCode.FAILED_PRECONDITION,
                "this node has no policy bundle configured (policy.bundle)",
            )
        return self.parts.policy.evaluator.policy.bundle

    async def _case(
        self, purpose: common_pb2.Purpose, case_ref: common_pb2.CaseRef, context: Context
    ) -> tuple[Case, Activity]:
        """The case named, checked against the purpose, or an abort saying what is wrong."""
        if not case_ref.case_id:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "case_ref.case_id is required")
        if case_ref.node_id != self.parts.node_id:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"case_ref.node_id is {case_ref.node_id!r}; this node is "
                f"{self.parts.node_id!r} and acts only on its own cases",
            )
        if not purpose.processing_activity_id:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, "purpose.processing_activity_id is required"
            )
        bundle = await self._bundle(context)
        try:
            case = await asyncio.to_thread(self.parts.registry.get, case_ref.case_id)
        except CaseError as exc:
            await context.abort(status_of(exc), str(exc))
        if purpose.processing_activity_id != case.activity:
            await context.abort(
                grpc.StatusCode.PERMISSION_DENIED,
                f"purpose.processing_activity_id must be the case's activity {case.activity!r}, "
                f"not {purpose.processing_activity_id!r}",
            )
        activity = bundle.activities.get(case.activity)
        if activity is None:
            await context.abort(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"the policy bundle in force no longer has activity {case.activity!r}",
            )
        return case, activity

    def _crossing(
        self, method: str, case: Case, activity: Activity, categories: tuple[str, ...] = ()
    ) -> Crossing:
        return Crossing(
            name=f"{SERVICE}/{method}",
            caller=current_identity(),
            activity=case.activity,
            activity_uri=activity.uri,
            phase=case.phase.to_proto(),
            case_ref=common_pb2.CaseRef(node_id=self.parts.node_id, case_id=case.id),
            subject=case.subject,
            categories=categories,
        )

    async def _change(self, crossing: Crossing, context: Context, change: Any) -> Case:
        """Audit ``crossing``, then apply ``change``; a refused change is audited as an error."""
        await commit(self.parts.audit, crossing, context)
        try:
            case: Case = await asyncio.to_thread(change)
        except CaseError as exc:
            await append(self.parts.audit, crossing, ok=False)
            await context.abort(status_of(exc), str(exc))
        return case

    def _status(self, case: Case) -> partner_pb2.CaseStatus:
        return case_status(case, self.parts.node_id, for_referrer=False)

    # -- RPCs ----------------------------------------------------------------

    async def Triage(  # noqa: N802 - gRPC method name
        self, request: case_pb2.TriageRequest, context: Context
    ) -> partner_pb2.CaseStatus:
        """Accept (with participants -> casusoverleg) or reject (-> afschaling)."""
        case, activity = await self._case(request.purpose, request.case_ref, context)
        registry = self.parts.registry
        if request.accept:
            participants = [
                Participant(org_id=p.org_id, org_type=p.org_type, node_id=p.node_id)
                for p in request.participants
            ]
            try:
                for p in participants:
                    p.check()
            except CaseInputError as exc:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"participants: {exc}")
            case = await self._change(
                self._crossing("Triage", case, activity),
                context,
                lambda: registry.accept(
                    case.id, reason_code=request.reason_code, participants=participants
                ),
            )
        else:
            if request.participants:
                await context.abort(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    "participants are named only when a case is accepted",
                )
            case = await self._change(
                self._crossing("Triage", case, activity),
                context,
                lambda: registry.reject(
                    case.id,
                    reason_code=request.reason_code or REJECTED_REASON,
                    retention_days=_retention_days(activity),
                ),
            )
        return self._status(case)

    async def AddParticipant(  # noqa: N802 - gRPC method name
        self, request: case_pb2.AddParticipantRequest, context: Context
    ) -> partner_pb2.CaseStatus:
        """Add one participant to a case in casusoverleg."""
        case, activity = await self._case(request.purpose, request.case_ref, context)
        p = request.participant
        participant = Participant(org_id=p.org_id, org_type=p.org_type, node_id=p.node_id)
        try:
            participant.check()
        except CaseInputError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"participant: {exc}")
        case = await self._change(
            self._crossing("AddParticipant", case, activity),
            context,
            lambda: self.parts.registry.add_participant(case.id, participant),
        )
        return self._status(case)

    async def RecordGround(  # noqa: N802 - gRPC method name
        self, request: case_pb2.RecordGroundRequest, context: Context
    ) -> partner_pb2.CaseStatus:
        """Record consent, a legal duty or a conflict van plichten for a category and provider."""
        case, activity = await self._case(request.purpose, request.case_ref, context)
        try:
            kind = GroundKind.from_proto(request.kind)
        except CaseInputError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"kind: {exc}")
        bundle = await self._bundle(context)
        if request.category not in bundle.categories:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"category {request.category!r} is not a category of the policy bundle",
            )
        case = await self._change(
            self._crossing("RecordGround", case, activity, (request.category,)),
            context,
            lambda: self.parts.registry.record_ground(
                case.id,
                kind=kind,
                category=request.category,
                provider_org_id=request.provider_org_id,
                evidence_ref=request.evidence_ref,
            ),
        )
        return self._status(case)

    async def RunHitNoHit(  # noqa: N802 - gRPC method name
        self, request: case_pb2.RunHitNoHitRequest, context: Context
    ) -> case_pb2.HitNoHitResult:
        """Ask local partners and peer nodes whether they know the subject."""
        case, _activity = await self._case(request.purpose, request.case_ref, context)
        deadline = request.deadline_ms / 1000 if request.deadline_ms else DEFAULT_DEADLINE_SECONDS
        if deadline > MAX_DEADLINE_SECONDS:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"deadline_ms must be at most {int(MAX_DEADLINE_SECONDS * 1000)}",
            )
        if case.phase.value not in {"aanmelding", "triage"}:
            await context.abort(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"case {case.id} is in {case.phase.value}; hit/no-hit is asked in aanmelding "
                "or triage",
            )
        try:
            result = await run_round(
                self.parts, case, caller=current_identity(), method=ROUND_METHOD, deadline=deadline
            )
        except RoundError as exc:
            await context.abort(grpc.StatusCode.UNAVAILABLE, str(exc))
        return result.to_proto(request.case_ref)

    async def StartUitvraag(  # noqa: N802 - gRPC method name
        self, request: case_pb2.StartUitvraagRequest, context: Context
    ) -> case_pb2.UitvraagResult:
        """Ask the participants for facts under policy and deliver the minimised facts."""
        case, activity = await self._case(request.purpose, request.case_ref, context)
        bundle = await self._bundle(context)
        categories = tuple(request.categories)
        if not categories:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "categories: name at least one")
        unknown = [c for c in categories if c not in bundle.categories]
        if unknown or len(set(categories)) != len(categories):
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"categories: each once, from the policy bundle; unknown: {unknown}",
            )
        if case.phase.value != "casusoverleg":
            await context.abort(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"case {case.id} is in {case.phase.value}; uitvraag needs casusoverleg",
            )
        deadline = (request.deadline_ms or UITVRAAG_DEFAULT_MS) / 1000
        if deadline > MAX_DEADLINE_SECONDS:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"deadline_ms must be at most {int(MAX_DEADLINE_SECONDS * 1000)}",
            )
        try:
            return await run_uitvraag(
                self.parts,
                case,
                categories,
                caller=current_identity(),
                activity_uri=activity.uri,
                deadline=deadline,
            )
        except UitvraagError as exc:
            await context.abort(grpc.StatusCode.UNAVAILABLE, str(exc))

    async def SetBottlenecks(  # noqa: N802 - gRPC method name
        self, request: case_pb2.SetBottlenecksRequest, context: Context
    ) -> partner_pb2.CaseStatus:
        """Replace the case's bottleneck tags (signalling)."""
        case, activity = await self._case(request.purpose, request.case_ref, context)
        bundle = await self._bundle(context)
        await commit(self.parts.audit, self._crossing("SetBottlenecks", case, activity), context)
        try:
            return await set_bottlenecks(request, self.parts.registry, bundle, self.parts.node_id)
        except (BottleneckTagError, CaseError) as exc:
            await append(
                self.parts.audit, self._crossing("SetBottlenecks", case, activity), ok=False
            )
            code = exc.code if isinstance(exc, BottleneckTagError) else status_of(exc)
            await context.abort(code, str(exc))

    async def CloseCase(  # noqa: N802 - gRPC method name
        self, request: case_pb2.CloseCaseRequest, context: Context
    ) -> partner_pb2.CaseStatus:
        """Close (afschaling) with an outcome, then tell every participant the outcome only."""
        case, activity = await self._case(request.purpose, request.case_ref, context)
        bundle = await self._bundle(context)
        if request.outcome not in bundle.outcomes:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"outcome {request.outcome!r} is not one of {', '.join(bundle.outcomes)}",
            )
        case = await self._change(
            self._crossing("CloseCase", case, activity),
            context,
            lambda: self.parts.registry.close(
                case.id, outcome=request.outcome, retention_days=_retention_days(activity)
            ),
        )
        await self._deliver_outcome(case, activity, context)
        return self._status(case)

    async def HandOverCase(  # noqa: N802 - gRPC method name
        self, request: case_pb2.HandOverCaseRequest, context: Context
    ) -> case_pb2.HandOverResult:
        """Hand an open case over to another node (overdracht); see gateway/flows/overdracht.py."""
        case, activity = await self._case(request.purpose, request.case_ref, context)
        try:
            done = await hand_over(
                self.parts,
                case,
                activity_uri=activity.uri,
                target=request.target_node_id,
                idempotency_key=request.idempotency_key,
                reason_code=request.reason_code,
                caller=current_identity(),
                retention_days=_retention_days(activity),
            )
        except HandOverError as exc:
            await context.abort(exc.code, str(exc))
        if done.created:
            await self._deliver_outcome(done.case, activity, context)
        return case_pb2.HandOverResult(
            remote_case_ref=done.remote_case_ref,
            created=done.created,
            status=self._status(done.case),
        )

    async def _deliver_outcome(self, case: Case, activity: Activity, context: Context) -> None:
        """The outcome to every participant under afschaling policy, audited first.

        A participant of a peer node is told through that node; if it cannot
        be reached a second record (status ERROR) says the outcome did not
        arrive, and the closure stands.
        """
        assert self.parts.policy is not None
        caller = current_identity()
        fact = common_pb2.Fact(category=OUTCOME_CATEGORY)
        fact.fields[OUTCOME_CATEGORY].text = case.outcome
        regie = Participant(org_id=self.parts.node_id, org_type="zvh", node_id=self.parts.node_id)
        for participant in case.participants:
            decision = self.parts.policy.decide(
                Request(
                    activity=case.activity,
                    phase="afschaling",
                    provider="zvh",
                    recipient=participant.org_type,
                    categories=(OUTCOME_CATEGORY,),
                    case_accepted=case.accepted_at is not None,
                )
            )
            crossing = self._crossing("CloseCase", case, activity, (OUTCOME_CATEGORY,))
            crossing.caller = as_recipient(caller, participant)
            crossing.provider = caller.uri
            crossing.decision = decision.to_proto()
            await commit(self.parts.audit, crossing, context)
            if decision.outcome is not Outcome.ALLOW:
                continue
            try:
                facts = minimise_facts([fact], decision)
            except FactRefusedError as exc:
                log.warning("outcome_refused", case_id=case.id, reason=str(exc))
                continue
            delivered = await deliver(
                self.parts,
                case,
                recipient=participant,
                provider=regie,
                facts=facts,
                decision=decision,
                phase=common_pb2.PHASE_AFSCHALING,
            )
            if not delivered:
                await append(self.parts.audit, crossing, ok=False)
