"""PartnerService: what a node serves to the partner systems of its region.

Served here: Pseudonymise (partners build their pseudonym index),
SubmitReferral (aanmelding) and GetCaseStatus. Each call is checked against
policy where data crosses, audited before it answers, and never holds a
plaintext identifier: subjects arrive under the federation key and are
transcrypted. The task stream and its answers (ReceiveTasks, AnswerHit,
AnswerFacts) belong to the case flow (#6) and answer UNIMPLEMENTED through
the stand-in.
"""

from __future__ import annotations

import asyncio
import re
from typing import TYPE_CHECKING, Any

import grpc
from schakel.v1 import common_pb2, partner_pb2

from certs.identity import Identity
from gateway.auth import current_identity
from gateway.cases import CaseError, Referral
from gateway.cases.status import case_status
from gateway.crossing import AUDIT_FAILED, Crossing, append, commit, refuse
from gateway.services import UnimplementedPartnerService
from gateway.tracing import current_trace
from policy.evaluator import Outcome, Request
from policy.pseudonyms import Ciphertext, PseudonymError

if TYPE_CHECKING:
    from gateway.node import NodeParts
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


def _trace() -> common_pb2.TraceContext:
    trace = current_trace()
    if trace is None:
        return common_pb2.TraceContext()
    return common_pb2.TraceContext(trace_id=trace.trace_id, span_id=trace.span_id)


class PartnerService(UnimplementedPartnerService):
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
            await refuse(self.parts.audit, crossing, context, exc.code, str(exc))
        crossing.case_ref = common_pb2.CaseRef(node_id=self.parts.node_id, case_id=result.case.id)
        if await append(self.parts.audit, crossing) is None:
            if result.created:
                # Nothing may exist that the log does not show: take the new case
                # back before the caller hears of the failure.
                await asyncio.to_thread(self.parts.registry.withdraw, result.case.id)
            await context.abort(grpc.StatusCode.UNAVAILABLE, AUDIT_FAILED)
        return partner_pb2.SubmitReferralResponse(
            case_ref=crossing.case_ref, created=result.created, trace=_trace()
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


def _takes_part(referrer: str, participants: Any, caller: Identity) -> bool:
    if caller.org_id == referrer:
        return True
    return any(p.org_id == caller.org_id and p.node_id == caller.node_id for p in participants)
