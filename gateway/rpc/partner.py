"""PartnerService: what a node serves to the partner systems of its region.

Served here: Pseudonymise (partners build their pseudonym index),
SubmitReferral (aanmelding) and GetCaseStatus. Each call is checked against
policy where data crosses, audited before it answers, and never holds a
plaintext identifier: subjects arrive under the federation key and are
transcrypted. The task stream (ReceiveTasks) hands a partner the work of
the case flow (gateway/FLOW.md); AnswerHit and AnswerFacts check an answer
against its task, judge it under policy and audit it before acknowledging;
AcknowledgeTask settles a fact delivery the partner has stored.
A new referral starts a hit/no-hit round in the background once answered.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import grpc
from schakel.v1 import common_pb2, partner_pb2, partner_pb2_grpc
from sqlalchemy.exc import SQLAlchemyError

from certs.identity import Identity
from gateway.cases import Case, CaseError, Referral
from gateway.cases.errors import CaseInputError
from gateway.cases.model import check_contact
from gateway.cases.status import case_status
from gateway.flows.crossing import AUDIT_FAILED, Crossing, append, commit, refuse
from gateway.flows.hitnohit import BEKEND, ROUND_METHOD, run_round
from gateway.rpc.auth import current_identity
from gateway.rpc.status import status_of
from gateway.tasks.broker import PendingTask, TaskError, Withheld
from gateway.tracing import current_trace_proto
from policy.evaluator import Outcome, Request
from policy.pseudonyms import Ciphertext, PseudonymError

if TYPE_CHECKING:
    from gateway.parts import NodeParts
    from policy.model import Activity
    from policy.store import PolicyStore

Context = grpc.aio.ServicerContext[Any, Any]

SERVICE = "schakel.v1.PartnerService"
MAX_PSEUDONYMISE = 1000
REFERRAL_CATEGORY = "aanmelding"
"""The policy category of a referral itself (theme and codes)."""
REGIE = "zvh"
"""The recipient of a referral: the ZVH's procesregisseur."""

_ACTIVITY = re.compile(r"^[a-z][a-z0-9._-]{0,127}$")


class PartnerService(partner_pb2_grpc.PartnerServiceServicer):
    """The partner-facing endpoint of a node."""

    def __init__(self, parts: NodeParts) -> None:
        self.parts = parts

    # -- shared checks -------------------------------------------------------

    async def _policy(self, context: Context) -> PolicyStore:
        if self.parts.policy is None:
            await context.abort(
                grpc.StatusCode.PERMISSION_DENIED,
                "this node has no policy bundle configured (policy.bundle): default deny",
            )
        return self.parts.policy

    async def _activity(self, purpose: common_pb2.Purpose, context: Context) -> Activity:
        """The bundle's activity for the request's purpose, or an INVALID_ARGUMENT/DENIED abort."""
        activity_id = purpose.processing_activity_id
        if not activity_id:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, "purpose.processing_activity_id is required"
            )
        if not _ACTIVITY.match(activity_id):
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                "purpose.processing_activity_id must be an activity id such as "
                "'zvh.complexe-casuistiek'",
            )
        policy = await self._policy(context)
        activity = policy.evaluator.policy.bundle.activities.get(activity_id)
        if activity is None or not activity.personal_data:
            await context.abort(
                grpc.StatusCode.PERMISSION_DENIED,
                f"processing activity {activity_id!r} is not one this node's policy serves "
                "for personal data (unknown-activity)",
            )
        return activity

    async def _subject(
        self, message: common_pb2.EncryptedPseudonym, what: str, context: Context
    ) -> Ciphertext:
        if self.parts.subjects is None:
            await context.abort(
                grpc.StatusCode.FAILED_PRECONDITION,
                "this node has no pseudonym keys configured (pseudonyms.transcryptor_keys)",
            )
        try:
            return Ciphertext.from_proto(message)
        except PseudonymError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"{what}: {exc}")

    # -- RPCs ----------------------------------------------------------------

    async def Pseudonymise(  # noqa: N802 - gRPC method name
        self, request: partner_pb2.PseudonymiseRequest, context: Context
    ) -> partner_pb2.PseudonymiseResponse:
        """Transcrypt subjects under Y to the caller's own domain (the node never decrypts)."""
        caller = current_identity()
        activity = await self._activity(request.purpose, context)
        count = len(request.subjects)
        if not 1 <= count <= MAX_PSEUDONYMISE:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"subjects: between 1 and {MAX_PSEUDONYMISE} per call, not {count}",
            )
        subjects = [
            await self._subject(message, f"subjects[{i}]", context)
            for i, message in enumerate(request.subjects)
        ]
        assert self.parts.subjects is not None  # _subject aborted otherwise
        node_subjects = self.parts.subjects
        try:
            moved = await asyncio.to_thread(
                lambda: [node_subjects.for_domain(s, caller.org_id) for s in subjects]
            )
        except PseudonymError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"subjects: {exc}")
        # One record per call: the node cannot tell whom the subjects are about
        # (it never decrypts them), and the caller's own domain is the target.
        await commit(
            self.parts.audit,
            Crossing(
                name=f"{SERVICE}/Pseudonymise",
                caller=caller,
                activity=activity.id,
                activity_uri=activity.uri,
            ),
            context,
        )
        return partner_pb2.PseudonymiseResponse(subjects=moved)

    async def SubmitReferral(  # noqa: N802 - gRPC method name
        self, request: partner_pb2.SubmitReferralRequest, context: Context
    ) -> partner_pb2.SubmitReferralResponse:
        """Open a case (aanmelding) under policy; idempotent on the idempotency key."""
        caller = current_identity()
        activity = await self._activity(request.purpose, context)
        for name in ("idempotency_key", "theme", "external_ref"):
            if not getattr(request, name):
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"{name} is required")
        if not request.HasField("subject"):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "subject is required")
        policy = await self._policy(context)
        bundle = policy.evaluator.policy.bundle
        if request.theme not in bundle.themes:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"theme {request.theme!r} is not one of {', '.join(bundle.themes)}",
            )
        subject = await self._subject(request.subject, "subject", context)
        assert self.parts.subjects is not None  # _subject aborted otherwise
        try:
            pseudonym = await asyncio.to_thread(self.parts.subjects.node_pseudonym, subject)
        except PseudonymError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"subject: {exc}")
        decision = policy.decide(
            Request(
                activity=activity.id,
                phase="aanmelding",
                provider=caller.org_type,
                recipient=REGIE,
                roles=frozenset({"procesregisseur"}),
                categories=(REFERRAL_CATEGORY,),
            )
        )
        crossing = Crossing(
            name=f"{SERVICE}/SubmitReferral",
            caller=caller,
            activity=activity.id,
            activity_uri=activity.uri,
            phase=common_pb2.PHASE_AANMELDING,
            subject=pseudonym,
            categories=(REFERRAL_CATEGORY,),
            decision=decision.to_proto(),
            provider=caller.uri,
        )
        if decision.outcome is not Outcome.ALLOW:
            reasons = ", ".join(f"{c}: {r}" for c, r in decision.withheld)
            await refuse(
                self.parts.audit,
                crossing,
                context,
                grpc.StatusCode.PERMISSION_DENIED,
                f"policy {decision.bundle_hash[:12]} does not let a {caller.org_type} refer "
                f"for {activity.id} ({reasons})",
            )
        referral = Referral(
            referrer_org_id=caller.org_id,
            referrer_org_type=caller.org_type,
            idempotency_key=request.idempotency_key,
            subject=pseudonym,
            activity=activity.id,
            theme=request.theme,
            criteria=tuple(request.criteria),
            reason_codes=tuple(request.reason_codes),
            external_ref=request.external_ref,
        )
        try:
            result = await asyncio.to_thread(self.parts.registry.refer, referral)
        except CaseError as exc:
            await refuse(self.parts.audit, crossing, context, status_of(exc), str(exc))
        crossing.case_ref = common_pb2.CaseRef(node_id=self.parts.node_id, case_id=result.case.id)
        if await append(self.parts.audit, crossing) is None:
            if result.created:
                # Nothing may exist that the log does not show: take the new case
                # back before the caller hears of the failure.
                await asyncio.to_thread(self.parts.registry.withdraw, result.case.id)
            await context.abort(grpc.StatusCode.UNAVAILABLE, AUDIT_FAILED)
        if result.created:
            self.parts.tasks.spawn(self._first_round(result.case, caller), "hit-no-hit")
        return partner_pb2.SubmitReferralResponse(
            case_ref=crossing.case_ref, created=result.created, trace=current_trace_proto()
        )

    async def GetCaseStatus(  # noqa: N802 - gRPC method name
        self, request: partner_pb2.GetCaseStatusRequest, context: Context
    ) -> partner_pb2.CaseStatus:
        """The status of a case the caller referred or takes part in."""
        caller = current_identity()
        activity = await self._activity(request.purpose, context)
        case_ref = request.case_ref
        if not case_ref.case_id:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "case_ref.case_id is required")
        hidden = f"no case {case_ref.case_id!r} at this node that you take part in"
        if case_ref.node_id != self.parts.node_id:
            await context.abort(grpc.StatusCode.NOT_FOUND, hidden)
        try:
            case = await asyncio.to_thread(self.parts.registry.get, case_ref.case_id)
        except CaseError:
            await context.abort(grpc.StatusCode.NOT_FOUND, hidden)
        if not _takes_part(case.referrer_org_id, case.participants, caller):
            # Same answer as a missing case: a case id must not reveal that a case exists.
            await context.abort(grpc.StatusCode.NOT_FOUND, hidden)
        if case.activity != activity.id:
            await context.abort(
                grpc.StatusCode.PERMISSION_DENIED,
                f"case {case.id} was opened for another processing activity than {activity.id}",
            )
        await commit(
            self.parts.audit,
            Crossing(
                name=f"{SERVICE}/GetCaseStatus",
                caller=caller,
                activity=activity.id,
                activity_uri=activity.uri,
                phase=case.phase.to_proto(),
                subject=case.subject,
                case_ref=case_ref,
            ),
            context,
        )
        return case_status(
            case,
            self.parts.node_id,
            for_referrer=case.referrer_org_id == caller.org_id,
            with_hits=False,
        )

    async def _first_round(self, case: Case, caller: Identity) -> None:
        """The hit/no-hit round a new referral starts, after its answer has left."""
        await run_round(self.parts, case, caller=caller, method=ROUND_METHOD)

    # -- the task stream -----------------------------------------------------

    async def ReceiveTasks(  # noqa: N802 - gRPC method name
        self, request: partner_pb2.ReceiveTasksRequest, context: Context
    ) -> AsyncIterator[partner_pb2.PartnerTask]:
        """Stream the caller's tasks (its organisation comes from the certificate)."""
        caller = current_identity()
        kinds = set(request.kinds)
        unknown = sorted(k for k in kinds if k not in _TASK_KINDS)
        if unknown:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"kinds: {unknown} are not task kinds; use HIT_QUERY, FACT_QUERY, FACT_DELIVERY",
            )
        async for task in self.parts.tasks.stream(caller.org_id, kinds):
            yield task

    async def _claim(
        self,
        request: partner_pb2.AnswerHitRequest | partner_pb2.AnswerFactsRequest,
        kind: partner_pb2.TaskKind.ValueType,
        context: Context,
    ) -> PendingTask:
        """The caller's open task that ``request`` answers, or an abort saying what is wrong."""
        caller = current_identity()
        if not request.task_id:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "task_id is required")
        try:
            pending = self.parts.tasks.claim(request.task_id, caller.org_id)
        except TaskError as exc:
            await context.abort(_TASK_ERROR_CODES[exc.reason], str(exc))
        task = pending.task
        if task.kind != kind:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"task {task.task_id} is a {partner_pb2.TaskKind.Name(task.kind)} task; "
                f"this call answers {partner_pb2.TaskKind.Name(kind)} tasks",
            )
        if request.purpose != task.purpose:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"purpose must equal the task's purpose ({task.purpose.processing_activity_id!r})",
            )
        if request.case_ref != task.case_ref:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"case_ref must equal the task's case ({task.case_ref.case_id!r})",
            )
        return pending

    def _crossing(self, name: str, pending: PendingTask, caller: Identity) -> Crossing:
        task = pending.task
        activity_id = task.purpose.processing_activity_id
        uri = ""
        if self.parts.policy is not None:
            activity = self.parts.policy.evaluator.policy.bundle.activities.get(activity_id)
            uri = activity.uri if activity is not None else ""
        return Crossing(
            name=f"{SERVICE}/{name}",
            caller=caller,
            activity=activity_id,
            activity_uri=uri,
            phase=task.phase,
            case_ref=task.case_ref,
            subject=pending.subject,
            provider=caller.uri,
        )

    async def AnswerHit(  # noqa: N802 - gRPC method name
        self, request: partner_pb2.AnswerHitRequest, context: Context
    ) -> partner_pb2.AnswerAck:
        """Take a hit/no-hit answer: check it, judge ``bekend`` under policy, audit, hand on."""
        caller = current_identity()
        pending = await self._claim(request, partner_pb2.TASK_KIND_HIT_QUERY, context)
        if request.known:
            try:
                check_contact(request.contact_handle)
            except CaseInputError as exc:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"contact_handle: {exc}")
        elif request.contact_handle:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                "contact_handle must be empty when the subject is not known",
            )
        crossing = self._crossing("AnswerHit", pending, caller)
        crossing.categories = (BEKEND,)
        released = False
        if self.parts.policy is not None:
            decision = self.parts.policy.decide(
                Request(
                    activity=crossing.activity,
                    phase=common_pb2.Phase.Name(pending.task.phase).removeprefix("PHASE_").lower(),
                    provider=caller.org_type,
                    recipient=REGIE,
                    roles=frozenset({"procesregisseur"}),
                    categories=(BEKEND,),
                )
            )
            crossing.decision = decision.to_proto()
            released = decision.outcome is Outcome.ALLOW
        await commit(self.parts.audit, crossing, context)
        answer = request if released else Withheld()
        self.parts.tasks.resolve(pending, answer)
        return partner_pb2.AnswerAck(task_id=request.task_id, trace=current_trace_proto())

    async def AnswerFacts(  # noqa: N802 - gRPC method name
        self, request: partner_pb2.AnswerFactsRequest, context: Context
    ) -> partner_pb2.AnswerAck:
        """Take an uitvraag answer: only categories asked; audited, then handed to the uitvraag.

        The uitvraag that asked judges and minimises the facts per recipient
        and audits each release before anything is delivered.
        """
        caller = current_identity()
        pending = await self._claim(request, partner_pb2.TASK_KIND_FACT_QUERY, context)
        asked = set(pending.task.categories)
        extra = sorted({f.category for f in request.facts} - asked)
        if extra:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"facts of categories not asked for: {', '.join(extra)}; "
                f"this task asked for {', '.join(sorted(asked))}",
            )
        crossing = self._crossing("AnswerFacts", pending, caller)
        crossing.categories = tuple(sorted({f.category for f in request.facts}))
        await commit(self.parts.audit, crossing, context)
        self.parts.tasks.resolve(pending, request)
        return partner_pb2.AnswerAck(task_id=request.task_id, trace=current_trace_proto())

    async def AcknowledgeTask(  # noqa: N802 - gRPC method name
        self, request: partner_pb2.AcknowledgeTaskRequest, context: Context
    ) -> partner_pb2.AnswerAck:
        """Settle a FACT_DELIVERY the caller has stored, so it is never sent again.

        Not audited: the delivery was audited when it was released, and the
        acknowledgement carries no personal data (see partner.proto).
        """
        caller = current_identity()
        if not request.task_id:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "task_id is required")
        try:
            await self.parts.tasks.acknowledge(request.task_id, caller.org_id)
        except TaskError as exc:
            await context.abort(_TASK_ERROR_CODES[exc.reason], str(exc))
        except SQLAlchemyError:
            await context.abort(
                grpc.StatusCode.UNAVAILABLE,
                f"the acknowledgement of task {request.task_id!r} could not be stored; try again",
            )
        return partner_pb2.AnswerAck(task_id=request.task_id, trace=current_trace_proto())


_TASK_ERROR_CODES = {
    "not_found": grpc.StatusCode.NOT_FOUND,
    "not_yours": grpc.StatusCode.PERMISSION_DENIED,
    "wrong_kind": grpc.StatusCode.INVALID_ARGUMENT,
}

_TASK_KINDS = frozenset(
    {
        partner_pb2.TASK_KIND_HIT_QUERY,
        partner_pb2.TASK_KIND_FACT_QUERY,
        partner_pb2.TASK_KIND_FACT_DELIVERY,
    }
)


def _takes_part(referrer: str, participants: Any, caller: Identity) -> bool:
    if caller.org_id == referrer:
        return True
    return any(p.org_id == caller.org_id and p.node_id == caller.node_id for p in participants)
