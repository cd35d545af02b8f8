"""RequestFacts: which facts this node holds on a peer's subject that the peer may have.

A peer is answered only within the link its case holds here
(:func:`gateway.flows.links.held_link`): the subject, the purpose and the
phase must be the link's, and the recipient type the procesregisseur's or a
participant's. The facts are those of the subject's active case here, if
that case serves the link's activity. Each stored fact is judged with its
original provider's organisation type as provider and the recipient type as
recipient, in the link's phase, and minimised before it leaves. No ground
counts: a ground recorded in this node's case belongs to that case, and the
providers are not asked, so none of them sees a ground the peer would state.
A special category (AVG art. 9), which leaves only on a ground, is
therefore refused outright: the case node asks its provider for it
(AskParticipant), who sees the ground it states. A category asked for and
not released is named with the reason it was withheld.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING

from schakel.v1 import common_pb2, federation_pb2

from certs.identity import Identity
from gateway.cases import Case, CaseRegistry
from gateway.cases.active import active_case_id
from gateway.errors import DeniedError, InvalidInputError, quote
from gateway.flows import inbound, links
from gateway.flows.crossing import record
from gateway.flows.participants import check_categories
from policy.evaluator import Request
from policy.minimise import FactRefusedError, minimise_fact
from policy.model import Sensitivity
from policy.vocabulary import ORG_TYPES

if TYPE_CHECKING:
    from gateway.parts import NodeParts
    from policy.store import PolicyStore

NOT_HELD = "not-held"
"""Withheld reason of a category this node holds no fact of for the subject."""
NOT_PARTICIPANT = "provider-not-participant"
"""Withheld reason of a fact whose provider no longer takes part in the case."""
MALFORMED = "malformed"
"""Withheld reason of a stored fact that does not fit its minimisation plan."""


@dataclass(frozen=True)
class Asked:
    """What a peer asks for: why, in which phase, for which recipient type, which categories."""

    activity: str
    phase: str
    """The phase's name in the policy bundle: the link's."""
    recipient: str
    categories: tuple[str, ...]


async def request_facts(
    parts: NodeParts, caller: Identity, request: federation_pb2.FederatedFactsRequest
) -> tuple[list[common_pb2.Fact], common_pb2.DecisionSummary]:
    """The facts a peer may have of its subject's case here, and the decision summary."""
    crossing = inbound.open_crossing(parts, caller, "RequestFacts", request.phase)
    pseudonym = inbound.open_subject(parts, crossing, request.subject)
    activity = inbound.check_caller(parts, crossing, request.purpose, request.case_ref)
    categories = check_categories(request.categories)
    crossing.categories = categories
    if request.recipient_org_type not in ORG_TYPES:
        raise InvalidInputError(f"recipient_org_type must be one of {', '.join(sorted(ORG_TYPES))}")
    policy = inbound.require_policy(parts)
    link = await links.held_link(
        parts, crossing, request.case_ref, pseudonym, phase=request.phase, gives=True
    )
    links.check_recipients(link, (request.recipient_org_type,))
    bundle = policy.evaluator.policy.bundle
    special = [
        c
        for c in categories
        if c in bundle.categories and bundle.categories[c].sensitivity is Sensitivity.ART9
    ]
    if special:
        raise DeniedError(
            f"category {quote(special[0])} is special (art. 9) and leaves only on a ground, "
            "which RequestFacts never counts: ask its provider with AskParticipant"
        )
    case_id = await asyncio.to_thread(active_case_id, parts.engine, pseudonym)
    case = None if case_id is None else await asyncio.to_thread(parts.registry.get, case_id)
    if case is not None and case.activity != link.activity:
        # Facts gathered for another activity never leave for this one.
        case = None
    asked = Asked(activity, link.phase.value, request.recipient_org_type, categories)
    facts, summary = await asyncio.to_thread(released_facts, policy, parts.registry, case, asked)
    crossing.decision = summary
    await record(parts.audit, crossing)
    return facts, summary


def released_facts(
    policy: PolicyStore, registry: CaseRegistry, case: Case | None, asked: Asked
) -> tuple[list[common_pb2.Fact], common_pb2.DecisionSummary]:
    """The minimised facts of ``case`` the peer may have, and the summary of the decision.

    Each stored fact is judged with its provider's organisation type as the
    provider; without a case nothing is held, so every category is withheld.
    """
    released: list[common_pb2.Fact] = []
    reasons: dict[str, str] = {}
    rule_ids: list[str] = []
    bases: list[str] = []
    if case is not None:
        org_types = {(p.node_id, p.org_id): p.org_type for p in case.participants}
        for stored in registry.facts(case.id):
            if stored.category not in asked.categories:
                continue
            provider = org_types.get((stored.provider_node_id, stored.provider_org_id))
            if provider is None:
                reasons.setdefault(stored.category, NOT_PARTICIPANT)
                continue
            decision = policy.decide(
                Request(
                    activity=asked.activity,
                    phase=asked.phase,
                    provider=provider,
                    recipient=asked.recipient,
                    categories=(stored.category,),
                    case_accepted=case.accepted_at is not None,
                    # No ground: see the module's docstring.
                )
            )
            if stored.category not in decision.released:
                reasons.setdefault(stored.category, decision.withheld[0][1])
                continue
            try:
                released.append(minimise_fact(stored.fact, decision))
            except FactRefusedError:
                # A stored fact that does not fit the plan never leaves whole.
                reasons.setdefault(stored.category, MALFORMED)
                continue
            rule_ids += [r for r in decision.rule_ids if r not in rule_ids]
            bases += [b for b in decision.legal_basis if b not in bases]
    return released, _summary(
        policy, asked.categories, released, reasons, rule_ids=rule_ids, bases=bases
    )


def _summary(
    policy: PolicyStore,
    categories: tuple[str, ...],
    released: list[common_pb2.Fact],
    reasons: dict[str, str],
    *,
    rule_ids: list[str],
    bases: list[str],
) -> common_pb2.DecisionSummary:
    out = {f.category for f in released}
    withheld = [
        common_pb2.WithheldCategory(category=c, reason=reasons.get(c, NOT_HELD))
        for c in categories
        if c not in out
    ]
    if not withheld:
        outcome = common_pb2.DECISION_OUTCOME_ALLOW
    elif out:
        outcome = common_pb2.DECISION_OUTCOME_PARTIAL
    else:
        outcome = common_pb2.DECISION_OUTCOME_DENY
    return common_pb2.DecisionSummary(
        outcome=outcome,
        released=[c for c in categories if c in out],
        withheld=withheld,
        bundle_hash=policy.bundle_hash,
        rule_ids=rule_ids,
        legal_basis=common_pb2.LegalBasis(code=",".join(bases)),
    )
