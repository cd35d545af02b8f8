"""Uitvraag: ask the participants of a case for facts, and deliver what policy releases.

For each participant as provider, the node first decides what that provider
may release to each other participant (and to the regie) for the categories
asked, in phase casusoverleg with the grounds recorded for that provider.
Only categories some recipient may receive are asked for. A provider of
this node gets a FACT_QUERY task; a provider of a peer node is asked through
that node's ``AskParticipant``, which decides again under its own policy and
minimises per recipient type (the provider's node minimises, once). When
the answer comes, the facts are sealed in the case vault, and per recipient
they are judged under that recipient's own decision, audited (one record per
provider -> recipient decision) and only then delivered with the subject in
the recipient's domain (:mod:`gateway.flows.delivery`; a peer node's partner via
``DeliverFacts``). An organisation that is not a participant is never a
recipient.

The procesregisseur starts it (:func:`start_uitvraag`) for categories of the
policy bundle, each once, while the case is in casusoverleg.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from schakel.v1 import case_pb2, common_pb2, federation_pb2, partner_pb2

from certs.identity import Identity
from gateway.cases import Case, Participant
from gateway.cases.steps import Step, check_step
from gateway.errors import AuditUnavailableError, InvalidInputError, NotConfiguredError
from gateway.federation.client import PeerCallError
from gateway.flows.crossing import Crossing, record
from gateway.flows.delivery import (
    PEER_DEADLINE_SECONDS,
    as_recipient,
    deliver,
    not_arrived,
    participant_proto,
    recipient_domain,
)
from gateway.flows.links import shown
from gateway.flows.participants import participant_uri, to_federated
from gateway.flows.regie import CaseCall, begin, check_count, deadline_seconds, quote_some
from gateway.logging import get_logger
from gateway.tracing import current_trace_proto
from policy.evaluator import Decision, Request, grounds_of
from policy.minimise import FactRefusedError, minimise_facts
from policy.vocabulary import PROCESREGISSEUR, REGIE, Phase

if TYPE_CHECKING:
    from gateway.parts import NodeParts
    from policy.store import PolicyStore

log = get_logger("uitvraag")

METHOD = "schakel.v1.CaseService/StartUitvraag"
DEFAULT_DEADLINE_MS = 5000
DEFAULT_DEADLINE_SECONDS = DEFAULT_DEADLINE_MS / 1000
MAX_CATEGORIES = 64
"""The most categories one uitvraag may name."""
REGIE_RECIPIENT = Participant(org_id="", org_type=REGIE, node_id="")
"""The procesregisseur as recipient: what the node keeps in its vault for the case."""


@dataclass(frozen=True)
class _Plan:
    provider: Participant
    decisions: dict[Participant, Decision]
    regie: Decision
    asked: tuple[str, ...]


def provider_grounds(case: Case, org_id: str) -> frozenset[tuple[str, str]]:
    """The grounds recorded in ``case`` for provider ``org_id``, as policy requests take them."""
    recorded: dict[str, list[str]] = {}
    for ground in case.grounds:
        if ground.provider_org_id == org_id:
            # Policy names grounds with hyphens ("conflict-van-plichten").
            recorded.setdefault(ground.category, []).append(ground.kind.value.replace("_", "-"))
    return grounds_of(recorded)


def _decide(
    policy: PolicyStore,
    case: Case,
    provider: Participant,
    recipient: Participant,
    categories: tuple[str, ...],
) -> Decision:
    return policy.decide(
        Request(
            activity=case.activity,
            phase=Phase.CASUSOVERLEG.value,
            provider=provider.org_type,
            recipient=recipient.org_type,
            roles=frozenset({PROCESREGISSEUR}) if recipient is REGIE_RECIPIENT else frozenset(),
            categories=categories,
            case_accepted=case.accepted_at is not None,
            grounds=provider_grounds(case, provider.org_id),
        )
    )


def plan(policy: PolicyStore, case: Case, categories: tuple[str, ...]) -> list[_Plan]:
    """Per provider (every participant): the decision for every recipient, and what to ask."""
    plans = []
    for provider in case.participants:
        decisions = {
            r: _decide(policy, case, provider, r, categories)
            for r in case.participants
            if r != provider
        }
        regie = _decide(policy, case, provider, REGIE_RECIPIENT, categories)
        released = {c for d in (*decisions.values(), regie) for c in d.released}
        plans.append(
            _Plan(provider, decisions, regie, tuple(c for c in categories if c in released))
        )
    return plans


@dataclass(frozen=True)
class _Answer:
    """A provider's answer: what goes into the vault, and the facts per recipient type.

    ``by_type`` is None for a provider of this node, whose raw facts this
    node minimises per recipient; a peer node's provider comes minimised
    per recipient type by its node.
    """

    vault: list[common_pb2.Fact]
    by_type: dict[str, list[common_pb2.Fact]] | None

    def for_recipient(self, recipient: Participant, decision: Decision) -> list[common_pb2.Fact]:
        """The facts ``recipient`` gets under this node's ``decision`` for it."""
        released = set(decision.released)
        if self.by_type is None:
            try:
                return minimise_facts([f for f in self.vault if f.category in released], decision)
            except FactRefusedError as exc:
                # The message names a category or field, never a value.
                log.warning("facts_refused", reason=str(exc))
                return []
        return [f for f in self.by_type.get(recipient.org_type, []) if f.category in released]


async def start_uitvraag(
    parts: NodeParts, call: CaseCall, categories: Sequence[str], deadline_ms: int
) -> case_pb2.UitvraagResult:
    """The procesregisseur's uitvraag for the case ``call`` names; see :func:`run_uitvraag`.

    ``categories`` are categories of the policy bundle, each once;
    ``deadline_ms`` bounds the wait for the answers (0 for the default).
    """
    action = await begin(parts, call)
    check_count(categories, MAX_CATEGORIES, "categories")
    asked = tuple(categories)
    if not asked:
        raise InvalidInputError("categories: name at least one")
    unknown = [c for c in asked if c not in action.bundle.categories]
    if unknown:
        raise InvalidInputError(
            f"categories: each once, from the policy bundle; unknown: {quote_some(unknown)}"
        )
    if len(set(asked)) != len(asked):
        raise InvalidInputError("categories: each once, from the policy bundle; one is repeated")
    action.crossing.categories = asked
    deadline = deadline_seconds(deadline_ms, DEFAULT_DEADLINE_MS)
    check_step(action.case, Step.UITVRAAG)
    return await run_uitvraag(
        parts,
        action.case,
        asked,
        caller=call.caller,
        activity_uri=action.activity.uri,
        deadline=deadline,
    )


async def run_uitvraag(
    parts: NodeParts,
    case: Case,
    categories: tuple[str, ...],
    *,
    caller: Identity,
    activity_uri: str,
    deadline: float = DEFAULT_DEADLINE_SECONDS,
) -> case_pb2.UitvraagResult:
    """Ask, judge, minimise, audit and deliver; the per-provider outcome.

    Raises AuditUnavailableError when an audit record cannot be written
    (then what it would have covered has not left).
    """
    policy, subjects = parts.policy, parts.subjects
    if policy is None or subjects is None:
        raise NotConfiguredError("this node has no policy bundle or no pseudonym keys configured")
    case_ref = common_pb2.CaseRef(node_id=parts.node_id, case_id=case.id)
    plans = plan(policy, case, categories)

    def crossing(who: Identity, p: _Plan, decision: Decision | None = None) -> Crossing:
        return Crossing(
            name=METHOD,
            caller=who,
            activity=case.activity,
            activity_uri=activity_uri,
            phase=common_pb2.PHASE_CASUSOVERLEG,
            case_ref=case_ref,
            subject=case.subject,
            categories=p.asked,
            decision=decision.to_proto() if decision is not None else None,
            provider=participant_uri(p.provider),
        )

    asking = [p for p in plans if p.asked]
    for p in asking:
        # The question itself tells the provider the subject is in this case.
        await record(parts.audit, crossing(caller, p))
    # One conversion through the chain for every provider asked.
    moved = await subjects.for_domains_from_pseudonym(
        case.subject, [recipient_domain(parts, p.provider) for p in asking], case.activity
    )
    answers = await asyncio.gather(
        *(
            _ask(parts, case, p, moved[recipient_domain(parts, p.provider)], deadline)
            for p in asking
        )
    )
    answered = [(p, a) for p, a in zip(asking, answers, strict=True) if a is not None]
    # Every release is on record before any is stored or delivered, so a
    # failed audit write leaves no partial release behind the error.
    releases: list[_Release] = []
    for p, answer in answered:
        for recipient, decision in p.decisions.items():
            audited = crossing(as_recipient(caller, recipient), p, decision)
            try:
                await record(parts.audit, audited)
            except AuditUnavailableError as exc:
                raise AuditUnavailableError(
                    "the audit record of a release could not be written, so nothing was "
                    "stored or delivered; try again later"
                ) from exc
            releases.append(
                _Release(p, recipient, decision, answer.for_recipient(recipient, decision), audited)
            )
    for p, answer in answered:
        for fact in answer.vault:
            await asyncio.to_thread(parts.registry.store_fact, case.id, fact, provider=p.provider)
    undelivered: dict[Participant, list[Participant]] = {}
    delivering = [r for r in releases if r.facts]
    for_recipients = await subjects.for_domains_from_pseudonym(
        case.subject, [recipient_domain(parts, r.recipient) for r in delivering], case.activity
    )
    for release in delivering:
        subject = for_recipients[recipient_domain(parts, release.recipient)]
        if not await _deliver(parts, case, release, subject):
            undelivered.setdefault(release.plan.provider, []).append(release.recipient)
    answering = {p.provider for p, _ in answered}
    result = case_pb2.UitvraagResult(case_ref=case_ref)
    for p in plans:
        outcome = result.providers.add(
            provider=participant_proto(p.provider),
            decision=p.regie.to_proto(),
            answered=p.provider in answering,
        )
        outcome.undelivered.extend(participant_proto(r) for r in undelivered.get(p.provider, []))
    return result


async def _ask(
    parts: NodeParts,
    case: Case,
    p: _Plan,
    subject: common_pb2.EncryptedPseudonym,
    deadline: float,
) -> _Answer | None:
    """Put the question to the provider, here or at its node; None when it did not answer.

    ``subject`` is the case's subject converted for the provider's domain,
    or for its node's when the provider is at another node.
    """
    case_ref = common_pb2.CaseRef(node_id=parts.node_id, case_id=case.id)
    purpose = common_pb2.Purpose(processing_activity_id=case.activity)
    if p.provider.node_id == parts.node_id:
        task = partner_pb2.PartnerTask(
            kind=partner_pb2.TASK_KIND_FACT_QUERY,
            purpose=purpose,
            case_ref=case_ref,
            phase=common_pb2.PHASE_CASUSOVERLEG,
            subject=subject,
            categories=list(p.asked),
            trace=current_trace_proto(),
            # The grounds this node's procesregisseur recorded for the provider.
            asserted_grounds=shown(provider_grounds(case, p.provider.org_id), parts.node_id),
        )
        pending = await parts.tasks.send(
            p.provider.org_id, task, subject=case.subject, timeout=deadline
        )
        answer = await parts.tasks.wait(pending)
        if not isinstance(answer, partner_pb2.AnswerFactsRequest):
            return None
        return _Answer(vault=list(answer.facts), by_type=None)
    if parts.peers is None:
        log.warning("uitvraag_no_federation", case_id=case.id, node=p.provider.node_id)
        return None
    types = dict.fromkeys([REGIE, *(r.org_type for r in p.decisions)])
    request = federation_pb2.AskParticipantRequest(
        purpose=purpose,
        case_ref=case_ref,
        subject=subject,
        provider=participant_proto(p.provider),
        categories=list(p.asked),
        recipient_org_types=list(types),
        grounds=to_federated(provider_grounds(case, p.provider.org_id)),
        deadline_ms=int(deadline * 1000),
    )
    try:
        reply = await parts.peers.ask_participant(
            p.provider.node_id, request, deadline=deadline + PEER_DEADLINE_SECONDS
        )
    except PeerCallError as exc:
        log.warning(
            "uitvraag_peer_unanswered", case_id=case.id, node=exc.node_id, reason=exc.reason
        )
        return None
    if not reply.answered:
        return None
    by_type = {r.recipient_org_type: list(r.facts) for r in reply.releases}
    regie = set(p.regie.released)
    vault = [f for f in by_type.get(REGIE, []) if f.category in regie]
    return _Answer(vault=vault, by_type=by_type)


@dataclass(frozen=True)
class _Release:
    """One provider -> recipient release, audited, waiting to be delivered."""

    plan: _Plan
    recipient: Participant
    decision: Decision
    facts: list[common_pb2.Fact]
    record: Crossing


async def _deliver(
    parts: NodeParts, case: Case, release: _Release, subject: common_pb2.EncryptedPseudonym
) -> bool:
    """Deliver one audited release; on failure a second record says it did not arrive."""
    delivered = await deliver(
        parts,
        case,
        recipient=release.recipient,
        provider=release.plan.provider,
        facts=release.facts,
        decision=release.decision,
        phase=common_pb2.PHASE_CASUSOVERLEG,
        grounds=provider_grounds(case, release.plan.provider.org_id),
        subject=subject,
    )
    if not delivered:
        await not_arrived(parts.audit, release.record)
    return delivered
