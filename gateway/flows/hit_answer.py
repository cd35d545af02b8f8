"""HitNoHit from a peer: is the person in an active case here? A hit gives a contact, nothing else.

The peer's question is judged under this node's policy (category
:data:`~policy.vocabulary.BEKEND` from the regie to the regie) and answered
from the case registry; the answer leaves only after its audit record.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from schakel.v1 import federation_pb2

from certs.identity import Identity
from gateway.cases import HitAnswer
from gateway.errors import DeniedError, NotConfiguredError
from gateway.flows import inbound
from gateway.flows.crossing import record
from policy.evaluator import Request
from policy.vocabulary import BEKEND, REGIE, phase_name

if TYPE_CHECKING:
    from gateway.parts import NodeParts


async def answer_hit(
    parts: NodeParts, caller: Identity, request: federation_pb2.FederatedHitRequest
) -> HitAnswer:
    """This node's hit/no-hit answer to a peer, audited before it is returned."""
    crossing = inbound.open_crossing(parts, caller, "HitNoHit", request.phase, (BEKEND,))
    pseudonym = inbound.open_subject(parts, crossing, request.subject)
    activity = inbound.check_caller(parts, crossing, request.purpose, request.case_ref)
    contact = parts.config.cases.contact_handle
    if not contact:
        raise NotConfiguredError("this node has no [cases] contact_handle to give on a hit")
    decision = inbound.decide(
        inbound.require_policy(parts),
        Request(
            activity=activity,
            phase=phase_name(request.phase),
            provider=REGIE,
            recipient=REGIE,
            categories=(BEKEND,),
        ),
    )
    crossing.decision = decision.to_proto()
    if BEKEND not in decision.released:
        reason = dict(decision.withheld).get(BEKEND, "")
        raise DeniedError(f"policy does not allow hit/no-hit for this purpose and phase ({reason})")
    answer = await asyncio.to_thread(parts.registry.active_hit, pseudonym, contact_handle=contact)
    await record(parts.audit, crossing)
    return answer
