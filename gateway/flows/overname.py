"""Overname: taking over a case another ZVH hands over (TransferCase) when the person moved.

The case opens here in aanmelding whatever phase it had at the sending node,
because the receiving ZVH runs its own triage. The pair (sending node,
idempotency key) identifies the transfer, so a retry returns the same case.

A hand-over needs no case link: this node releases nothing, it opens a case
of its own. What it checks instead is who hands over what: the case named
is the calling node's (``case_ref.node_id``), the calling node is the
provider and the referrer of the new case (organisation type
:data:`~policy.vocabulary.REGIE`, so no partner certificate is ever taken
for it), and the activity is one this node's policy serves.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING

from schakel.v1 import common_pb2, federation_pb2

from certs.identity import Identity
from gateway.cases import Referral
from gateway.errors import AuditUnavailableError, DeniedError, InvalidInputError, quote
from gateway.flows import inbound
from gateway.flows.crossing import record
from policy.vocabulary import REFERRAL, REGIE

if TYPE_CHECKING:
    from gateway.parts import NodeParts


@dataclass(frozen=True)
class TakenOver:
    """The case at this node, and whether this call opened it (False on a retry)."""

    case_id: str
    created: bool


async def take_over(
    parts: NodeParts, caller: Identity, request: federation_pb2.TransferCaseRequest
) -> TakenOver:
    """Open the handed-over case here, in aanmelding; a retry returns the same case.

    The case counts only with its audit record: when that cannot be written,
    a case this call opened is withdrawn again.
    """
    crossing = inbound.open_crossing(parts, caller, "TransferCase", request.phase, (REFERRAL,))
    pseudonym = inbound.open_subject(parts, crossing, request.subject)
    activity = inbound.check_caller(parts, crossing, request.purpose, request.case_ref)
    crossing.provider = inbound.node_uri(caller.node_id)
    tags = inbound.check_codes(request.bottlenecks, "bottlenecks")
    if parts.policy is not None:
        if activity not in parts.policy.evaluator.policy.bundle.activities:
            raise DeniedError(f"this node's policy serves no activity {quote(activity)}")
        known = set(parts.policy.evaluator.policy.bundle.bottlenecks)
        unknown = [t for t in tags if t not in known]
        if unknown:
            raise InvalidInputError(
                f"bottleneck tag(s) not in the policy bundle: {quote(', '.join(unknown))}"
            )
    referral = Referral(
        referrer_org_id=caller.node_id,
        referrer_org_type=REGIE,
        idempotency_key=request.idempotency_key,
        subject=pseudonym,
        activity=activity,
        theme=request.theme,
        external_ref=f"{request.case_ref.node_id}/{request.case_ref.case_id}",
    )
    registry = parts.registry
    result = await asyncio.to_thread(registry.refer, referral)
    case_id = result.case.id
    if result.created and tags:
        await asyncio.to_thread(registry.set_bottlenecks, case_id, tags)
    crossing.case_ref = common_pb2.CaseRef(node_id=parts.node_id, case_id=case_id)
    try:
        await record(parts.audit, crossing)
    except AuditUnavailableError:
        if result.created:
            await asyncio.to_thread(registry.withdraw, case_id)
        raise
    return TakenOver(case_id, result.created)
