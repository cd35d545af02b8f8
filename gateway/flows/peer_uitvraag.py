"""Uitvraag in a peer's case at this node's partners: AskParticipant and DeliverFacts.

The case node cannot reach this node's partners, so it asks this node to put
the question to a provider (:func:`ask_participant`) and to hand a recipient
what was released to it (:func:`deliver_facts`). Both are answered only
within the link the case node made here (:mod:`gateway.flows.links`): the
provider or recipient of this node takes part in the linked case, the other
side is of a participant's type (or the procesregisseur), and the grounds
the case node states are kept on the link as its assertion, which is what
this node's policy reads. The checks and the policy judgements are in
:mod:`gateway.flows.participants`; what every peer call shares (crossing
first, subject next) is in :mod:`gateway.flows.inbound`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING

from schakel.v1 import common_pb2, federation_pb2, partner_pb2

from certs.identity import Identity
from gateway.cases import Participant
from gateway.errors import InvalidInputError
from gateway.flows import inbound, links
from gateway.flows.crossing import record
from gateway.flows.delivery import DELIVERY_TTL_SECONDS
from gateway.flows.participants import (
    check_categories,
    check_partner,
    check_provider,
    check_recipient_types,
    deadline_seconds,
    decide,
    grounds,
    participant_uri,
    release,
)
from gateway.logging import get_logger
from gateway.tracing import current_trace_proto
from policy.evaluator import Decision
from policy.vocabulary import Phase

if TYPE_CHECKING:
    from gateway.parts import NodeParts

log = get_logger("peer_uitvraag")

DELIVERY_PHASES = frozenset({common_pb2.PHASE_CASUSOVERLEG, common_pb2.PHASE_AFSCHALING})
"""The phases in which a peer delivers facts: uitvraag, and the outcome at closure."""


@dataclass(frozen=True)
class Release:
    """What one recipient type may have of a provider's answer."""

    recipient_org_type: str
    facts: list[common_pb2.Fact]
    decision: Decision


@dataclass(frozen=True)
class Asked:
    """The outcome of AskParticipant: whether the provider answered, and each release."""

    answered: bool
    releases: list[Release]


async def ask_participant(
    parts: NodeParts, caller: Identity, request: federation_pb2.AskParticipantRequest
) -> Asked:
    """Put a peer case's uitvraag to one of this node's partners; release under our policy.

    The question is audited before the partner sees it, and each release
    (one per recipient type) before the answer leaves.
    """
    crossing = inbound.open_crossing(parts, caller, "AskParticipant", common_pb2.PHASE_CASUSOVERLEG)
    pseudonym = inbound.open_subject(parts, crossing, request.subject)
    activity = inbound.check_caller(parts, crossing, request.purpose, request.case_ref)
    provider = check_partner(parts.config, request.provider, "provider")
    crossing.provider = participant_uri(provider)
    categories = check_categories(request.categories)
    crossing.categories = categories
    types = check_recipient_types(request.recipient_org_types)
    stated = grounds(request.grounds)
    deadline = deadline_seconds(request.deadline_ms)
    policy = inbound.require_policy(parts)
    link = await links.held_link(
        parts,
        crossing,
        request.case_ref,
        pseudonym,
        phase=Phase.CASUSOVERLEG.to_proto(),
        gives=True,
    )
    links.check_participant(link, provider, "provider")
    links.check_recipients(link, types)
    by = Participant(provider.org_id, provider.org_type, provider.node_id)
    recorded = await links.asserted_grounds(parts, crossing, link, by, stated)
    decisions = {
        t: decide(
            policy,
            activity=activity,
            phase=Phase.CASUSOVERLEG.value,
            provider=provider.org_type,
            recipient=t,
            categories=categories,
            recorded=recorded,
        )
        for t in types
    }
    asked = tuple(c for c in categories if any(c in d.released for d in decisions.values()))
    facts: list[common_pb2.Fact] = []
    answered = False
    if asked:
        await record(parts.audit, dataclasses.replace(crossing, categories=asked))
        answer = await _ask(
            parts,
            request,
            provider.org_id,
            pseudonym,
            asked=asked,
            grounds=links.shown(recorded, link.node_id),
            deadline=deadline,
        )
        if answer is not None:
            answered, facts = True, list(answer.facts)
    releases: list[Release] = []
    for org_type, decision in decisions.items():
        released = release(facts, decision)
        if released.malformed:
            log.warning("facts_malformed", method="AskParticipant", categories=released.malformed)
        out = dataclasses.replace(
            crossing,
            categories=tuple(sorted({f.category for f in released.facts})),
            decision=decision.to_proto(),
        )
        await record(parts.audit, out)
        releases.append(Release(org_type, released.facts, decision))
    return Asked(answered, releases)


async def _ask(
    parts: NodeParts,
    request: federation_pb2.AskParticipantRequest,
    org_id: str,
    pseudonym: str,
    *,
    asked: tuple[str, ...],
    grounds: list[partner_pb2.AssertedGround],
    deadline: float,
) -> partner_pb2.AnswerFactsRequest | None:
    """A FACT_QUERY to the partner, with the subject in its domain and the grounds the case
    node asserts, each named with that node; its answer or None."""
    subjects = parts.subjects
    assert subjects is not None  # open_subject checked it
    activity = request.purpose.processing_activity_id
    subject = await subjects.for_domain_from_pseudonym(pseudonym, org_id, activity)
    task = partner_pb2.PartnerTask(
        kind=partner_pb2.TASK_KIND_FACT_QUERY,
        purpose=request.purpose,
        case_ref=request.case_ref,
        phase=common_pb2.PHASE_CASUSOVERLEG,
        subject=subject,
        categories=list(asked),
        trace=current_trace_proto(),
        asserted_grounds=grounds,
    )
    pending = await parts.tasks.send(org_id, task, subject=pseudonym, timeout=deadline)
    answer = await parts.tasks.wait(pending)
    return answer if isinstance(answer, partner_pb2.AnswerFactsRequest) else None


@dataclass(frozen=True)
class Delivered:
    """The outcome of DeliverFacts: the categories queued, and this node's decision."""

    categories: list[str]
    decision: Decision


async def deliver_facts(
    parts: NodeParts, caller: Identity, request: federation_pb2.DeliverFactsRequest
) -> Delivered:
    """Queue facts released in a peer's case for one of this node's partners.

    The provider's node minimised them; this node decides by category
    under its own policy, audits, and only then queues the delivery.
    """
    crossing = inbound.open_crossing(parts, caller, "DeliverFacts", request.phase)
    pseudonym = inbound.open_subject(parts, crossing, request.subject)
    activity = inbound.check_caller(parts, crossing, request.purpose, request.case_ref)
    if request.phase not in DELIVERY_PHASES:
        raise InvalidInputError("phase must be PHASE_CASUSOVERLEG or PHASE_AFSCHALING")
    check_provider(request.provider)
    categories = check_categories(
        tuple(dict.fromkeys(f.category for f in request.facts)), "the categories of facts"
    )
    crossing.categories = categories
    recipient = check_partner(parts.config, request.recipient, "recipient")
    stated = grounds(request.grounds)
    policy = inbound.require_policy(parts)
    # A closed link still takes the outcome, in afschaling: it gives nothing.
    link = await links.held_link(
        parts, crossing, request.case_ref, pseudonym, phase=request.phase, gives=False
    )
    links.check_participant(link, recipient, "recipient")
    links.check_provider(parts, link, request.provider)
    # Only a provider the link vouches for is named in the record.
    crossing.provider = participant_uri(request.provider)
    by = Participant(request.provider.org_id, request.provider.org_type, request.provider.node_id)
    decision = decide(
        policy,
        activity=activity,
        phase=link.phase.value,
        provider=request.provider.org_type,
        recipient=recipient.org_type,
        categories=categories,
        recorded=await links.asserted_grounds(parts, crossing, link, by, stated),
    )
    crossing.decision = decision.to_proto()
    await record(parts.audit, crossing)
    released = set(decision.released)
    delivered = [f for f in request.facts if f.category in released]
    if delivered:
        subjects = parts.subjects
        assert subjects is not None  # open_subject checked it
        subject = await subjects.for_domain_from_pseudonym(pseudonym, recipient.org_id, activity)
        task = partner_pb2.PartnerTask(
            kind=partner_pb2.TASK_KIND_FACT_DELIVERY,
            purpose=request.purpose,
            case_ref=request.case_ref,
            phase=request.phase,
            subject=subject,
            facts=delivered,
            decision=decision.to_proto(),
            trace=current_trace_proto(),
        )
        await parts.tasks.send(
            recipient.org_id, task, subject=pseudonym, timeout=DELIVERY_TTL_SECONDS
        )
    return Delivered([c for c in categories if c in released], decision)
