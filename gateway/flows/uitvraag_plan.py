"""What an uitvraag asks whom, and what the regie may keep of the answers.

:func:`plan` decides, per provider (every participant of the case), what
each other participant and the regie may receive under the node's policy
and the grounds recorded for that provider, and so which categories to ask
for at all; :func:`for_regie` minimises an answer to what the regie keeps.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from schakel.v1 import common_pb2

from gateway.cases import Case, Participant
from gateway.logging import get_logger
from policy.evaluator import Decision, Request, grounds_of
from policy.minimise import FactRefusedError, minimise_fact
from policy.store import PolicyStore
from policy.vocabulary import PROCESREGISSEUR, REGIE, Phase

log = get_logger("uitvraag")

REGIE_RECIPIENT = Participant(org_id="", org_type=REGIE, node_id="")
"""The procesregisseur as recipient: what the node keeps in its vault for the case."""


@dataclass(frozen=True)
class Plan:
    """One provider's part of an uitvraag: the decision per recipient and what to ask."""

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


def plan(policy: PolicyStore, case: Case, categories: tuple[str, ...]) -> list[Plan]:
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
            Plan(provider, decisions, regie, tuple(c for c in categories if c in released))
        )
    return plans


def for_regie(facts: Sequence[common_pb2.Fact], regie: Decision) -> list[common_pb2.Fact]:
    """``facts`` as the regie may keep them: the categories ``regie`` released, minimised.

    A fact that does not fit its plan is left out (and logged by category),
    never kept whole.
    """
    released = set(regie.released)
    kept = []
    for fact in facts:
        if fact.category not in released:
            continue
        try:
            kept.append(minimise_fact(fact, regie))
        except FactRefusedError as exc:
            # The message names a category or field, never a value.
            log.warning("fact_not_kept", reason=str(exc))
    return kept


def kept_days(regie: Decision, category: str) -> int | None:
    """How long after closure the regie may keep ``category`` (None: the case's retention)."""
    result = regie.result(category)
    return result.retention_days if result is not None else None
