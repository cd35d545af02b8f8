"""Afschaling: the case closes with an outcome code, and its participants are told only that.

Closing moves a case in casusoverleg to afschaling and starts its retention
clock (the registry decides whether that is legal now). Then every
participant is told the outcome under afschaling policy: category
:data:`~policy.vocabulary.OUTCOME` from the regie to the participant's
organisation type, minimised, audited before it leaves. A participant of a
peer node is told through that node, after the node was told the case's
link is closed; if it cannot be reached a second
record (status ERROR) says the outcome did not arrive, and the closure stands.
All participants are told at once, under the call's deadline; those the
outcome did not reach are named in the answer.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING

from schakel.v1 import common_pb2

from certs.identity import Identity
from gateway.cases import Case, Participant
from gateway.deadline import Deadline
from gateway.errors import InvalidInputError, NotConfiguredError, quote
from gateway.flows.crossing import Crossing, actor_uri, record
from gateway.flows.delivery import (
    PEER_DEADLINE_SECONDS,
    as_recipient,
    deliver,
    not_arrived,
    recipient_domain,
)
from gateway.flows.linking import tell_links
from gateway.flows.regie import SERVICE, CaseCall, apply, begin
from gateway.logging import get_logger
from policy.evaluator import Decision, Outcome, Request
from policy.minimise import FactRefusedError, minimise_facts
from policy.vocabulary import OUTCOME, REGIE, Phase

if TYPE_CHECKING:
    from gateway.parts import NodeParts

log = get_logger("afschaling")

METHOD = f"{SERVICE}/CloseCase"
"""The audit name of an outcome told, whether a closure or a hand-over closed the case."""
DEADLINE_SECONDS = PEER_DEADLINE_SECONDS
"""How long a closure tells the participants its outcome when the caller sets no deadline."""


@dataclass(frozen=True)
class Closed:
    """A closed case, and the participants its outcome did not reach in time."""

    case: Case
    undelivered: tuple[Participant, ...]
    """Participants at peer nodes whose node did not take the outcome before the deadline;
    the audit log holds a second record (status ERROR) for each."""


async def close_case(parts: NodeParts, call: CaseCall, outcome: str) -> Closed:
    """Close the case with ``outcome`` (a code of the policy bundle), then tell the participants."""
    deadline = Deadline.of_call(DEADLINE_SECONDS)
    action = await begin(parts, call)
    if outcome not in action.bundle.outcomes:
        raise InvalidInputError(
            f"outcome {quote(outcome)} is not one of {', '.join(action.bundle.outcomes)}"
        )
    case = await apply(
        parts,
        action,
        lambda: parts.registry.close(
            action.case.id, outcome=outcome, retention_days=action.retention_days
        ),
    )
    undelivered = await tell_outcome(parts, call.caller, case, action.activity.uri, deadline)
    return Closed(case, undelivered)


async def tell_outcome(
    parts: NodeParts, caller: Identity, case: Case, activity_uri: str, deadline: Deadline
) -> tuple[Participant, ...]:
    """Tell every participant of the closed ``case`` its outcome, as policy allows, audited first.

    ``caller`` is the procesregisseur who closed it, the provider of the outcome.
    Every peer node with a participant is first told its link is closed, so
    that it takes the outcome and gives nothing more within the link.

    Returns the participants the outcome did not reach by ``deadline``.
    """
    # The links get a share of the call's time, so the outcome still has the rest.
    await tell_links(
        parts, caller, case, activity_uri=activity_uri, deadline=deadline.for_questions()
    )
    policy = parts.policy
    if policy is None:
        raise NotConfiguredError("this node has no policy bundle configured (policy.bundle)")
    fact = common_pb2.Fact(category=OUTCOME)
    fact.fields[OUTCOME].text = case.outcome
    regie = Participant(org_id=parts.node_id, org_type=REGIE, node_id=parts.node_id)
    telling: list[tuple[Participant, list[common_pb2.Fact], Decision, Crossing]] = []
    for participant in case.participants:
        decision = policy.decide(
            Request(
                activity=case.activity,
                phase=Phase.AFSCHALING.value,
                provider=REGIE,
                recipient=participant.org_type,
                categories=(OUTCOME,),
                case_accepted=case.accepted_at is not None,
            )
        )
        release = Crossing(
            name=METHOD,
            caller=as_recipient(caller, participant),
            activity=case.activity,
            activity_uri=activity_uri,
            phase=case.phase.to_proto(),
            case_ref=common_pb2.CaseRef(node_id=parts.node_id, case_id=case.id),
            subject=case.subject,
            categories=(OUTCOME,),
            decision=decision.to_proto(),
            provider=actor_uri(caller),
        )
        await record(parts.audit, release)
        if decision.outcome is not Outcome.ALLOW:
            continue
        try:
            facts = minimise_facts([fact], decision)
        except FactRefusedError as exc:
            # The message names a category or field, never a value.
            log.warning("outcome_refused", case_id=case.id, reason=str(exc))
            continue
        telling.append((participant, facts, decision, release))
    if not telling:
        return ()
    subjects = parts.subjects
    if subjects is None:
        raise NotConfiguredError("this node has no pseudonym keys configured")
    # One conversion through the chain for every participant told.
    moved = await subjects.for_domains_from_pseudonym(
        case.subject, [recipient_domain(parts, p) for p, _, _, _ in telling], case.activity
    )

    async def tell(
        participant: Participant,
        facts: list[common_pb2.Fact],
        decision: Decision,
        release: Crossing,
    ) -> bool:
        """False when the outcome was released to ``participant`` but did not reach it."""
        delivered = await deliver(
            parts,
            case,
            recipient=participant,
            provider=regie,
            facts=facts,
            decision=decision,
            phase=common_pb2.PHASE_AFSCHALING,
            deadline=deadline,
            subject=moved[recipient_domain(parts, participant)],
        )
        if not delivered:
            await not_arrived(parts.audit, release)
        return delivered

    told = await asyncio.gather(*(tell(*item) for item in telling))
    return tuple(item[0] for item, ok in zip(telling, told, strict=True) if not ok)


__all__ = ["DEADLINE_SECONDS", "METHOD", "Closed", "close_case", "tell_outcome"]
