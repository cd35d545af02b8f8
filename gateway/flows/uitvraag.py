"""Uitvraag: ask the participants of a case for facts, and deliver what policy releases.

For each participant as provider, the node first decides what that provider
may release to each other participant (and to the regie) for the categories
asked, in phase casusoverleg with the grounds recorded for that provider.
Only categories some recipient may receive are asked for. A provider of
this node gets a FACT_QUERY task; a provider of a peer node is asked through
that node's ``AskParticipant``, which decides again under its own policy and
minimises per recipient type (the provider's node minimises, once). When
the answer comes, per recipient the facts are judged under that recipient's
own decision, audited (one record per provider -> recipient decision) and
only then delivered with the subject in the recipient's domain
(:mod:`gateway.flows.delivery`; a peer node's partner via ``DeliverFacts``).
An organisation that is not a participant is never a recipient.

Nothing is kept that the procesregisseur may not receive: the case vault
gets the answer minimised under the regie's own decision (recipient the
regie, role procesregisseur), with the retention of the rule that released
it, and a provider's raw answer lives only in memory while this uitvraag
minimises it per recipient. A peer's answer for the regie is minimised again
here (minimising is idempotent), so a peer cannot put more in the vault than
this node's policy lets the regie have. Later releases from the vault
(``RequestFacts``) work from what the regie was given; a recipient that may
have more is served by asking again.

The procesregisseur starts it (:func:`start_uitvraag`) for categories of the
policy bundle, each once, while the case is in casusoverleg. One deadline
bounds the whole step: the questions get most of it
(:meth:`~gateway.deadline.Deadline.for_questions`), the deliveries
the rest, all sent at once; a provider that has not answered and a recipient
whose node has not taken its facts by then are named in the answer.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from schakel.v1 import case_pb2, common_pb2, federation_pb2, partner_pb2

from certs.identity import Identity
from gateway.cases import Case, Participant
from gateway.cases.steps import Step, check_step
from gateway.deadline import Deadline
from gateway.errors import (
    AuditUnavailableError,
    InvalidInputError,
    NotConfiguredError,
    WrongStateError,
)
from gateway.federation.client import PeerCallError
from gateway.flows.crossing import Crossing, record
from gateway.flows.delivery import (
    as_recipient,
    deliver,
    not_arrived,
    participant_proto,
    recipient_domain,
)
from gateway.flows.links import shown
from gateway.flows.participants import participant_uri, to_federated
from gateway.flows.regie import CaseCall, begin, check_count, deadline_seconds, quote_some
from gateway.flows.uitvraag_plan import (
    Plan,
    for_regie,
    kept_days,
    plan,
    provider_grounds,
)
from gateway.logging import get_logger
from gateway.tracing import current_trace_proto
from policy.evaluator import Decision
from policy.minimise import FactRefusedError, minimise_facts
from policy.vocabulary import REGIE

if TYPE_CHECKING:
    from gateway.parts import NodeParts

log = get_logger("uitvraag")

METHOD = "schakel.v1.CaseService/StartUitvraag"
DEFAULT_DEADLINE_MS = 5000
DEFAULT_DEADLINE_SECONDS = DEFAULT_DEADLINE_MS / 1000
MAX_CATEGORIES = 64
"""The most categories one uitvraag may name."""
PEER_REPLY_SHARE = 0.2
"""Of the time a peer node's provider gets, the part kept for its node's answer to travel back."""
MAX_PEER_REPLY_SECONDS = 0.25


@dataclass(frozen=True)
class _Answer:
    """A provider's answer: what the vault keeps, and what each recipient may be given.

    ``kept`` is minimised for the regie (:func:`for_regie`). ``raw`` is a
    provider of this node's own answer, held only in memory while this node
    minimises it per recipient; ``by_type`` is set instead for a peer node's
    provider, whose node minimised it per recipient type.
    """

    kept: list[common_pb2.Fact]
    raw: list[common_pb2.Fact]
    by_type: dict[str, list[common_pb2.Fact]] | None

    def for_recipient(self, recipient: Participant, decision: Decision) -> list[common_pb2.Fact]:
        """The facts ``recipient`` gets under this node's ``decision`` for it."""
        released = set(decision.released)
        if self.by_type is None:
            try:
                return minimise_facts([f for f in self.raw if f.category in released], decision)
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
    ``deadline_ms`` bounds the whole step (0 for the default), as does the
    call's own gRPC deadline.
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
    deadline = Deadline.of_call(deadline_seconds(deadline_ms, DEFAULT_DEADLINE_MS))
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
    deadline: Deadline | None = None,
) -> case_pb2.UitvraagResult:
    """Ask, judge, minimise, audit and deliver by ``deadline``; the per-provider outcome.

    Raises AuditUnavailableError when an audit record cannot be written
    (then what it would have covered has not left).
    """
    deadline = deadline or Deadline.after(DEFAULT_DEADLINE_SECONDS)
    policy, subjects = parts.policy, parts.subjects
    if policy is None or subjects is None:
        raise NotConfiguredError("this node has no policy bundle or no pseudonym keys configured")
    case_ref = common_pb2.CaseRef(node_id=parts.node_id, case_id=case.id)
    plans = plan(policy, case, categories)

    def crossing(who: Identity, p: Plan, decision: Decision | None = None) -> Crossing:
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
    # The question itself tells the provider the subject is in this case.
    await asyncio.gather(*(record(parts.audit, crossing(caller, p)) for p in asking))
    # One conversion through the chain for every provider asked.
    moved = await subjects.for_domains_from_pseudonym(
        case.subject, [recipient_domain(parts, p.provider) for p in asking], case.activity
    )
    questions = deadline.for_questions()
    answers = await asyncio.gather(
        *(
            _ask(parts, case, p, moved[recipient_domain(parts, p.provider)], questions)
            for p in asking
        )
    )
    answered = [(p, a) for p, a in zip(asking, answers, strict=True) if a is not None]
    # The case may have moved on while the questions were out (a change from
    # outside this node's case lock): release nothing from a case that left
    # casusoverleg.
    check_step(await asyncio.to_thread(parts.registry.get, case.id), Step.UITVRAAG)
    # Every release is on record before any is stored or delivered, so a
    # failed audit write leaves no partial release behind the error.
    releases = [
        _Release(
            p,
            recipient,
            decision,
            answer.for_recipient(recipient, decision),
            crossing(as_recipient(caller, recipient), p, decision),
        )
        for p, answer in answered
        for recipient, decision in p.decisions.items()
    ]
    try:
        await asyncio.gather(*(record(parts.audit, r.record) for r in releases))
    except AuditUnavailableError as exc:
        raise AuditUnavailableError(
            "the audit record of a release could not be written, so nothing was "
            "stored or delivered; try again later"
        ) from exc
    try:
        for p, answer in answered:
            for fact in answer.kept:
                await asyncio.to_thread(
                    functools.partial(
                        parts.registry.store_fact,
                        case.id,
                        fact,
                        provider=p.provider,
                        retention_days=kept_days(p.regie, fact.category),
                    )
                )
    except WrongStateError as exc:
        # Left casusoverleg between the check and the store: the releases
        # are on record but go nowhere, and the log says so.
        await asyncio.gather(*(not_arrived(parts.audit, r.record) for r in releases))
        raise WrongStateError(
            f"case {case.id} left casusoverleg while the uitvraag ran; nothing was "
            "delivered, and the audit log records each release as not arrived"
        ) from exc
    sending = [r for r in releases if r.facts]
    # One conversion through the chain for every recipient delivered to.
    for_recipients = await subjects.for_domains_from_pseudonym(
        case.subject, [recipient_domain(parts, r.recipient) for r in sending], case.activity
    )
    arrived = await asyncio.gather(
        *(
            _deliver(parts, case, r, for_recipients[recipient_domain(parts, r.recipient)], deadline)
            for r in sending
        )
    )
    undelivered: dict[Participant, list[Participant]] = {}
    for release, ok in zip(sending, arrived, strict=True):
        if not ok:
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
    p: Plan,
    subject: common_pb2.EncryptedPseudonym,
    deadline: Deadline,
) -> _Answer | None:
    """Put the question to the provider, here or at its node; None when it did not answer
    by ``deadline``.

    ``subject`` is the case's subject converted for the provider's domain,
    or for its node's when the provider is at another node.
    """
    if deadline.passed:
        return None
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
            p.provider.org_id, task, subject=case.subject, timeout=deadline.left()
        )
        answer = await parts.tasks.wait(pending)
        if not isinstance(answer, partner_pb2.AnswerFactsRequest):
            return None
        raw = list(answer.facts)
        return _Answer(kept=for_regie(raw, p.regie), raw=raw, by_type=None)
    if parts.peers is None:
        log.warning("uitvraag_no_federation", case_id=case.id, node=p.provider.node_id)
        return None
    types = dict.fromkeys([REGIE, *(r.org_type for r in p.decisions)])
    left = deadline.left()
    if left <= 0:
        return None
    # The provider's node must answer before our deadline, so its partner gets
    # less time than the call: the rest carries the answer back.
    ask_ms = int((left - min(left * PEER_REPLY_SHARE, MAX_PEER_REPLY_SECONDS)) * 1000)
    request = federation_pb2.AskParticipantRequest(
        purpose=purpose,
        case_ref=case_ref,
        subject=subject,
        provider=participant_proto(p.provider),
        categories=list(p.asked),
        recipient_org_types=list(types),
        grounds=to_federated(provider_grounds(case, p.provider.org_id)),
        # 0 would mean the peer's default; never ask for less than a millisecond.
        deadline_ms=max(ask_ms, 1),
    )
    try:
        reply = await parts.peers.ask_participant(p.provider.node_id, request, deadline=left)
    except PeerCallError as exc:
        log.warning(
            "uitvraag_peer_unanswered", case_id=case.id, node=exc.node_id, reason=exc.reason
        )
        return None
    if not reply.answered:
        return None
    by_type = {r.recipient_org_type: list(r.facts) for r in reply.releases}
    return _Answer(kept=for_regie(by_type.get(REGIE, []), p.regie), raw=[], by_type=by_type)


@dataclass(frozen=True)
class _Release:
    """One provider -> recipient release, audited, waiting to be delivered."""

    plan: Plan
    recipient: Participant
    decision: Decision
    facts: list[common_pb2.Fact]
    record: Crossing


async def _deliver(
    parts: NodeParts,
    case: Case,
    release: _Release,
    subject: common_pb2.EncryptedPseudonym,
    deadline: Deadline,
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
        deadline=deadline,
        grounds=provider_grounds(case, release.plan.provider.org_id),
        subject=subject,
    )
    if not delivered:
        await not_arrived(parts.audit, release.record)
    return delivered
