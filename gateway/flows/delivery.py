"""Hand released facts to one participant of a case, wherever it is connected.

A participant of this node gets a FACT_DELIVERY task with the subject in
its own domain. A participant of a peer node is reached through that node's
``DeliverFacts``, with the subject in the peer's domain; the peer checks the
categories under its own policy, audits, and queues the task. The caller
has audited the release before it calls :func:`deliver`, and when the
release did not arrive, :func:`not_arrived` adds a second record that says so.

Every delivery runs under the deadline of the step that makes it: a peer
node that does not take a delivery before then counts as not arrived, and
the step delivers to all its recipients at once, so one peer that hangs
costs the step its deadline once, not once per recipient.
"""

from __future__ import annotations

import contextlib
import dataclasses
from typing import TYPE_CHECKING

from schakel.v1 import common_pb2, federation_pb2, partner_pb2

from certs.identity import Identity, PeerKind
from gateway.audit.store import AuditLog
from gateway.cases import Case, Participant
from gateway.deadline import Deadline
from gateway.errors import AuditUnavailableError, NotConfiguredError
from gateway.federation.client import PeerCallError
from gateway.flows.crossing import Crossing, record
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
"""How long a peer node has to take a delivery when the step sets no shorter deadline."""


def participant_proto(p: Participant) -> common_pb2.Participant:
    """A registry participant as on the wire."""
    return common_pb2.Participant(org_id=p.org_id, org_type=p.org_type, node_id=p.node_id)


def as_recipient(caller: Identity, recipient: Participant) -> Identity:
    """The recipient as the requester of its release in the audit record."""
    return dataclasses.replace(
        caller,
        kind=PeerKind.PARTNER,
        node_id=recipient.node_id,
        org_id=recipient.org_id,
        org_type=recipient.org_type,
        roles=frozenset(),
    )


def recipient_domain(parts: NodeParts, recipient: Participant) -> str:
    """The domain a delivery's subject goes to: a local partner's own, else its node's."""
    return recipient.org_id if recipient.node_id == parts.node_id else recipient.node_id


async def deliver(
    parts: NodeParts,
    case: Case,
    *,
    recipient: Participant,
    provider: Participant,
    facts: list[common_pb2.Fact],
    decision: Decision,
    phase: common_pb2.Phase.ValueType,
    deadline: Deadline,
    grounds: frozenset[tuple[str, str]] = frozenset(),
    subject: common_pb2.EncryptedPseudonym | None = None,
) -> bool:
    """Queue ``facts`` for ``recipient``; False when its peer node did not take them in time.

    ``subject`` is the case's subject already converted for the recipient's
    domain (:func:`recipient_domain`), when the caller converted a batch for
    several recipients at once.
    """
    subjects = parts.subjects
    if subjects is None:
        raise NotConfiguredError(
            "this node has no pseudonym keys configured ([[transcryptors]], pseudonyms.domain_key)"
        )
    if subject is None:
        domain = recipient_domain(parts, recipient)
        subject = await subjects.for_domain_from_pseudonym(case.subject, domain, case.activity)
    case_ref = common_pb2.CaseRef(node_id=parts.node_id, case_id=case.id)
    purpose = common_pb2.Purpose(processing_activity_id=case.activity)
    if recipient.node_id == parts.node_id:
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
    left = deadline.left()
    if left <= 0:
        log.warning("delivery_failed", case_id=case.id, node=recipient.node_id, reason="deadline")
        return False
    try:
        await parts.peers.deliver_facts(recipient.node_id, request, deadline=left)
    except PeerCallError as exc:
        log.warning("delivery_failed", case_id=case.id, node=recipient.node_id, reason=exc.reason)
        return False
    return True


async def not_arrived(audit: AuditLog, release: Crossing) -> None:
    """Record that the audited ``release`` did not arrive (its record again, status ERROR).

    The release itself is on record and nothing more left the node, so a
    failure to write this second record does not fail the call: the write
    failure is in the node's log.
    """
    with contextlib.suppress(AuditUnavailableError):
        await record(audit, release, ok=False)
