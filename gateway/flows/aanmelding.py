"""Aanmelding: a partner refers a person to the ZVH, and a case opens under policy.

The referral's crossing is made first and its subject decrypted to the
node's own domain before anything else is checked, so that every refusal
(a bad field, an unknown activity or theme, a policy denial, a conflicting
retry) is recorded with the subject and shows in that person's inzage.

A referral is idempotent on (referrer, idempotency key). The case exists
only once its record is in the audit log: when that write fails, a case it
created is withdrawn before the caller hears of the failure. A new case then
starts its first hit/no-hit round in the background, after the answer left.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING

from schakel.v1 import common_pb2, partner_pb2

from certs.identity import Identity
from gateway.cases import Case, Referral
from gateway.errors import AuditUnavailableError, DeniedError, InvalidInputError, quote
from gateway.flows.crossing import Crossing, record
from gateway.flows.hitnohit import ROUND_METHOD, run_round
from gateway.flows.partner_request import activity_of, node_pseudonym, policy_of
from policy.evaluator import Outcome, Request
from policy.vocabulary import PROCESREGISSEUR, REFERRAL, REGIE, Phase

if TYPE_CHECKING:
    from gateway.parts import NodeParts

METHOD = "schakel.v1.PartnerService/SubmitReferral"
MAX_CODES = 32
"""Criteria or reason codes one referral may list."""
_REQUIRED = ("idempotency_key", "theme", "external_ref")


@dataclass(frozen=True)
class Submitted:
    """The case a referral opened, or the one an earlier call with its key opened."""

    case_ref: common_pb2.CaseRef
    created: bool


async def submit_referral(
    parts: NodeParts, caller: Identity, request: partner_pb2.SubmitReferralRequest
) -> Submitted:
    """Open a case for ``request`` (aanmelding) under policy, audited before it answers."""
    crossing = Crossing(
        name=METHOD,
        caller=caller,
        activity=request.purpose.processing_activity_id,
        phase=Phase.AANMELDING.to_proto(),
        categories=(REFERRAL,),
        provider=caller.uri,
    )
    if not request.HasField("subject"):
        raise InvalidInputError("subject is required")
    crossing.subject = await node_pseudonym(
        parts, request.subject, "subject", request.purpose.processing_activity_id
    )
    activity = activity_of(parts, request.purpose)
    crossing.activity_uri = activity.uri
    referral = _referral(caller, request, activity.id, crossing.subject)
    policy = policy_of(parts)
    themes = policy.evaluator.policy.bundle.themes
    if referral.theme not in themes:
        raise InvalidInputError(f"theme {quote(referral.theme)} is not one of {', '.join(themes)}")
    decision = policy.decide(
        Request(
            activity=activity.id,
            phase=Phase.AANMELDING.value,
            provider=caller.org_type,
            recipient=REGIE,
            roles=frozenset({PROCESREGISSEUR}),
            categories=(REFERRAL,),
        )
    )
    crossing.decision = decision.to_proto()
    if decision.outcome is not Outcome.ALLOW:
        reasons = ", ".join(f"{c}: {r}" for c, r in decision.withheld)
        raise DeniedError(
            f"policy {decision.bundle_hash[:12]} does not let a {caller.org_type} refer "
            f"for {activity.id} ({reasons})"
        )
    result = await asyncio.to_thread(parts.registry.refer, referral)
    crossing.case_ref = common_pb2.CaseRef(node_id=parts.node_id, case_id=result.case.id)
    try:
        await record(parts.audit, crossing)
    except AuditUnavailableError:
        if result.created:
            # Nothing may exist that the log does not show: take the new case
            # back before the caller hears of the failure.
            await asyncio.to_thread(parts.registry.withdraw, result.case.id)
        raise
    if result.created:
        parts.tasks.spawn(_first_round(parts, result.case, caller), "hit-no-hit")
    return Submitted(case_ref=crossing.case_ref, created=result.created)


def _referral(
    caller: Identity, request: partner_pb2.SubmitReferralRequest, activity: str, subject: str
) -> Referral:
    """The checked referral ``request`` asks for; InvalidInputError names a bad field."""
    for name in _REQUIRED:
        if not getattr(request, name):
            raise InvalidInputError(f"{name} is required")
    for name in ("criteria", "reason_codes"):
        count = len(getattr(request, name))
        if count > MAX_CODES:
            raise InvalidInputError(f"{name}: at most {MAX_CODES} codes, not {count}")
    # The registry's checks name the field and never echo its value.
    return Referral(
        referrer_org_id=caller.org_id,
        referrer_org_type=caller.org_type,
        idempotency_key=request.idempotency_key,
        subject=subject,
        activity=activity,
        theme=request.theme,
        criteria=tuple(request.criteria),
        reason_codes=tuple(request.reason_codes),
        external_ref=request.external_ref,
    ).check()


async def _first_round(parts: NodeParts, case: Case, caller: Identity) -> None:
    """The hit/no-hit round a new referral starts, after its answer has left."""
    await run_round(parts, case, caller=caller, method=ROUND_METHOD)


__all__ = ["MAX_CODES", "METHOD", "Submitted", "submit_referral"]
