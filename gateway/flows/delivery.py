"""Hand released facts to one participant of a case, wherever it is connected.

A participant of this node gets a FACT_DELIVERY task with the subject in
its own domain. A participant of a peer node is reached through that node's
``DeliverFacts``, with the subject in the peer's domain; the peer checks the
categories under its own policy, audits, and queues the task. The caller
has audited the release before it calls :func:`deliver`.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from schakel.v1 import common_pb2, federation_pb2, partner_pb2

from gateway.cases import Case, Participant
from gateway.federation.client import PeerCallError
from gateway.flows.participants import to_federated
from gateway.logging import get_logger
from gateway.tracing import current_trace_proto
from policy.evaluator import Decision

if TYPE_CHECKING:
    from gateway.parts import NodeParts

log = get_logger("delivery")

DELIVERY_TTL_SECONDS = 24 * 3600.0
"""How long a FACT_DELIVERY waits for its recipient's task stream."""
PEER_DEADLINE_SECONDS = 5.0
"""How long a peer node has to take a delivery for one of its partners."""


def participant_proto(p: Participant) -> common_pb2.Participant:
    """A registry participant as on the wire."""
    return common_pb2.Participant(org_id=p.org_id, org_type=p.org_type, node_id=p.node_id)


async def deliver(
    parts: NodeParts,
    case: Case,
    *,
    recipient: Participant,
    provider: Participant,
    facts: list[common_pb2.Fact],
    decision: Decision,
    phase: common_pb2.Phase.ValueType,
    grounds: frozenset[tuple[str, str]] = frozenset(),
) -> bool:
    """Queue ``facts`` for ``recipient``; False when its peer node did not take them."""
    subjects = parts.subjects
    if subjects is None:
        raise ValueError("delivering needs the node's pseudonym keys")
    case_ref = common_pb2.CaseRef(node_id=parts.node_id, case_id=case.id)
    purpose = common_pb2.Purpose(processing_activity_id=case.activity)
    if recipient.node_id == parts.node_id:
        subject = await asyncio.to_thread(
            subjects.for_domain_from_pseudonym, case.subject, recipient.org_id
        )
        task = partner_pb2.PartnerTask(
            kind=partner_pb2.TASK_KIND_FACT_DELIVERY,
            purpose=purpose,
            case_ref=case_ref,
            phase=phase,
            subject=subject,
            facts=facts,
            decision=decision.to_proto(),
            trace=current_trace_proto(),
        )
        await parts.tasks.send(
            recipient.org_id, task, subject=case.subject, timeout=DELIVERY_TTL_SECONDS
        )
        return True
    if parts.peers is None:
        log.warning("delivery_no_federation", case_id=case.id, node=recipient.node_id)
        return False
    subject = await asyncio.to_thread(
        subjects.for_domain_from_pseudonym, case.subject, recipient.node_id
    )
    request = federation_pb2.DeliverFactsRequest(
        purpose=purpose,
        case_ref=case_ref,
        subject=subject,
        phase=phase,
        recipient=participant_proto(recipient),
        provider=participant_proto(provider),
        facts=facts,
        grounds=to_federated(grounds),
    )
    try:
        await parts.peers.deliver_facts(recipient.node_id, request, deadline=PEER_DEADLINE_SECONDS)
    except PeerCallError as exc:
        log.warning("delivery_failed", case_id=case.id, node=recipient.node_id, reason=exc.reason)
        return False
    return True
