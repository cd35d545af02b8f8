"""Uitvraag: ask the participants of a case for facts, and deliver what policy releases.

For each local participant as provider, the node first decides what that
provider may release to each other participant (and to the regie) for the
categories asked, in phase casusoverleg with the grounds recorded for that
provider. Only categories some recipient may receive are asked for, in a
FACT_QUERY task. When the answer comes (``AnswerFacts`` has checked and
audited it), the facts are sealed in the case vault, and per recipient they
are minimised under that recipient's own decision, audited (one record per
provider -> recipient decision) and only then delivered as a FACT_DELIVERY
task with the subject in the recipient's domain. An organisation that is not
a participant is never a recipient.

Participants at peer nodes are not asked or delivered to here: that is the
federation's RequestFacts (issue #6, TODO(#6): remote providers/recipients).
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from schakel.v1 import case_pb2, common_pb2, partner_pb2

from certs.identity import Identity, PeerKind
from gateway.cases import Case, Participant
from gateway.crossing import Crossing, append
from gateway.logging import get_logger
from gateway.tasks import PendingTask
from gateway.tracing import current_trace
from policy.evaluator import Decision, Request, grounds_of
from policy.minimise import FactRefusedError, minimise_facts

if TYPE_CHECKING:
    from gateway.node import NodeParts
    from policy.store import PolicyStore

log = get_logger("uitvraag")

METHOD = "schakel.v1.CaseService/StartUitvraag"
DEFAULT_DEADLINE_SECONDS = 5.0
DELIVERY_TTL_SECONDS = 24 * 3600.0
"""How long a FACT_DELIVERY waits in memory for its recipient's task stream."""
REGIE = Participant(org_id="", org_type="zvh", node_id="")
"""The procesregisseur as recipient: what the node keeps in its vault for the case."""


class UitvraagError(Exception):
    """The uitvraag could not go on; the message is safe to return to the caller."""


@dataclass(frozen=True)
class _Plan:
    provider: Participant
    decisions: dict[Participant, Decision]
    regie: Decision
    asked: tuple[str, ...]


def _grounds(case: Case, provider: Participant) -> frozenset[tuple[str, str]]:
    recorded: dict[str, list[str]] = {}
    for ground in case.grounds:
        if ground.provider_org_id == provider.org_id:
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
            phase="casusoverleg",
            provider=provider.org_type,
            recipient=recipient.org_type,
            roles=frozenset({"procesregisseur"}) if recipient is REGIE else frozenset(),
            categories=categories,
            case_accepted=case.accepted_at is not None,
            grounds=_grounds(case, provider),
        )
    )


def plan(policy: PolicyStore, case: Case, node_id: str, categories: tuple[str, ...]) -> list[_Plan]:
    """Per local provider: the decision for every recipient, and what to ask for."""
    local = [p for p in case.participants if p.node_id == node_id]
    plans = []
    for provider in local:
        decisions = {
            r: _decide(policy, case, provider, r, categories) for r in local if r != provider
        }
        regie = _decide(policy, case, provider, REGIE, categories)
        released = {c for d in (*decisions.values(), regie) for c in d.released}
        plans.append(
            _Plan(provider, decisions, regie, tuple(c for c in categories if c in released))
        )
    return plans


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


def _trace() -> common_pb2.TraceContext:
    trace = current_trace()
    if trace is None:
        return common_pb2.TraceContext()
    return common_pb2.TraceContext(trace_id=trace.trace_id, span_id=trace.span_id)


def _participant(p: Participant) -> common_pb2.Participant:
    return common_pb2.Participant(org_id=p.org_id, org_type=p.org_type, node_id=p.node_id)


def _partner_uri(p: Participant) -> str:
    return f"schakel://partner/{p.node_id}/{p.org_id}"


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

    Raises UitvraagError when an audit record cannot be written (then what
    it would have covered has not left).
    """
    policy, subjects = parts.policy, parts.subjects
    if policy is None or subjects is None:
        raise UitvraagError("this node has no policy bundle or no pseudonym keys configured")
    case_ref = common_pb2.CaseRef(node_id=parts.node_id, case_id=case.id)
    plans = plan(policy, case, parts.node_id, categories)

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
            provider=_partner_uri(p.provider),
        )

    asking = [p for p in plans if p.asked]
    for p in asking:
        # The question itself tells the provider the subject is in this case.
        if await append(parts.audit, crossing(caller, p)) is None:
            raise UitvraagError("the audit record of a question could not be written")
    pending: list[PendingTask] = []
    for p in asking:
        subject = await asyncio.to_thread(
            subjects.for_domain_from_pseudonym, case.subject, p.provider.org_id
        )
        task = partner_pb2.PartnerTask(
            kind=partner_pb2.TASK_KIND_FACT_QUERY,
            purpose=common_pb2.Purpose(processing_activity_id=case.activity),
            case_ref=case_ref,
            phase=common_pb2.PHASE_CASUSOVERLEG,
            subject=subject,
            categories=list(p.asked),
            trace=_trace(),
        )
        pending.append(
            await parts.tasks.send(p.provider.org_id, task, subject=case.subject, timeout=deadline)
        )
    answers = await asyncio.gather(*(parts.tasks.wait(t) for t in pending))
    by_provider = dict(zip([p.provider for p in asking], answers, strict=True))
    result = case_pb2.UitvraagResult(case_ref=case_ref)
    for p in plans:
        answer = by_provider.get(p.provider)
        answered = isinstance(answer, partner_pb2.AnswerFactsRequest)
        result.providers.append(
            case_pb2.ProviderOutcome(
                provider=_participant(p.provider), decision=p.regie.to_proto(), answered=answered
            )
        )
        if isinstance(answer, partner_pb2.AnswerFactsRequest):
            await _release(parts, case, p, list(answer.facts), caller=caller, crossing=crossing)
    return result


async def _release(
    parts: NodeParts,
    case: Case,
    p: _Plan,
    facts: list[common_pb2.Fact],
    *,
    caller: Identity,
    crossing: Callable[[Identity, _Plan, Decision], Crossing],
) -> None:
    subjects = parts.subjects
    assert subjects is not None
    for fact in facts:
        await asyncio.to_thread(parts.registry.store_fact, case.id, fact, provider=p.provider)
    for recipient, decision in p.decisions.items():
        released = set(decision.released)
        try:
            minimised = minimise_facts([f for f in facts if f.category in released], decision)
        except FactRefusedError as exc:
            # The message names a category or field, never a value.
            log.warning("facts_refused", case_id=case.id, reason=str(exc))
            minimised = []
        record = crossing(as_recipient(caller, recipient), p, decision)
        if await append(parts.audit, record) is None:
            raise UitvraagError("the audit record of a release could not be written")
        if not minimised:
            continue
        subject = await asyncio.to_thread(
            subjects.for_domain_from_pseudonym, case.subject, recipient.org_id
        )
        task = partner_pb2.PartnerTask(
            kind=partner_pb2.TASK_KIND_FACT_DELIVERY,
            purpose=common_pb2.Purpose(processing_activity_id=case.activity),
            case_ref=record.case_ref,
            phase=common_pb2.PHASE_CASUSOVERLEG,
            subject=subject,
            facts=minimised,
            decision=decision.to_proto(),
            trace=_trace(),
        )
        await parts.tasks.send(
            recipient.org_id, task, subject=case.subject, timeout=DELIVERY_TTL_SECONDS
        )
