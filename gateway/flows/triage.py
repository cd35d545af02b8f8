"""Triage and casusoverleg: start triage, accept or reject, name participants, record grounds.

The procesregisseur first moves a referral from aanmelding into triage
(:func:`start_triage`); the hit/no-hit round may run before and during it.
At triage the procesregisseur accepts the case, naming the participants
(deelnemers), which moves it to casusoverleg, or rejects it, which closes it
with outcome ``niet-ontvankelijk``; a case still in aanmelding cannot be
decided. Each peer node with a participant is told its case link first
(:mod:`gateway.flows.linking`), and the case moves only once every such node
took it. In casusoverleg more participants may
join, and while the case is open the procesregisseur records the grounds
(consent, a legal duty, a conflict van plichten) that let a special category
cross. The registry decides whether each change is legal in the case's
phase; this module refuses malformed input before anything is recorded.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from schakel.v1 import case_pb2

from gateway.cases import REJECTED_OUTCOME, Case, GroundKind, Participant
from gateway.cases.errors import CaseInputError
from gateway.cases.model import check_code, check_external_ref, check_id
from gateway.cases.phases import Action
from gateway.errors import InvalidInputError, quote
from gateway.flows.linking import as_accepted, linked_apply, with_participant
from gateway.flows.regie import CaseCall, apply, begin, check_count

if TYPE_CHECKING:
    from gateway.parts import NodeParts

MAX_PARTICIPANTS = 64
"""The most participants one request may name."""


def _checked(participants: Sequence[Participant], what: str) -> tuple[Participant, ...]:
    try:
        return tuple(p.check() for p in participants)
    except CaseInputError as exc:
        raise CaseInputError(f"{what}: {exc.message}") from None


async def start_triage(parts: NodeParts, call: CaseCall) -> Case:
    """Move the case from aanmelding into triage; audited first, a refusal audited too."""
    action = await begin(parts, call)
    return await apply(parts, action, lambda: parts.registry.start_triage(action.case.id))


async def triage(
    parts: NodeParts,
    call: CaseCall,
    *,
    accept: bool,
    reason_code: str,
    participants: Sequence[Participant],
) -> Case:
    """Accept (with participants -> casusoverleg) or reject (-> afschaling) a case in triage."""
    action = await begin(parts, call)
    registry = parts.registry
    case_id = action.case.id
    if not accept:
        if participants:
            raise InvalidInputError("participants are named only when a case is accepted")
        reason = check_code(reason_code or REJECTED_OUTCOME, "reason_code")
        return await apply(
            parts,
            action,
            lambda: registry.reject(
                case_id, reason_code=reason, retention_days=action.retention_days
            ),
        )
    check_count(participants, MAX_PARTICIPANTS, "participants")
    named = _checked(participants, "participants")
    check_code(reason_code, "reason_code")
    # Every peer node with a participant must hold its link before the case moves.
    return await linked_apply(
        parts,
        action,
        as_accepted(action.case, named),
        move=Action.ACCEPT,
        required={p.node_id for p in named} - {parts.node_id},
        change=lambda: registry.accept(case_id, reason_code=reason_code, participants=named),
    )


async def add_participant(parts: NodeParts, call: CaseCall, participant: Participant) -> Case:
    """Add one participant to a case in casusoverleg; its node, if a peer, must take the link."""
    action = await begin(parts, call)
    (checked,) = _checked([participant], "participant")
    return await linked_apply(
        parts,
        action,
        with_participant(action.case, checked),
        move=Action.ADD_PARTICIPANT,
        required={checked.node_id} - {parts.node_id},
        change=lambda: parts.registry.add_participant(action.case.id, checked),
    )


async def record_ground(
    parts: NodeParts,
    call: CaseCall,
    *,
    kind: case_pb2.GroundKind.ValueType,
    category: str,
    provider_org_id: str,
    evidence_ref: str,
) -> Case:
    """Record consent, a legal duty or a conflict van plichten for a category and provider."""
    action = await begin(parts, call, (category,))
    ground = GroundKind.from_proto(kind)
    if category not in action.bundle.categories:
        raise InvalidInputError(
            f"category {quote(category)} is not a category of the policy bundle"
        )
    check_id(provider_org_id, "provider_org_id")
    check_external_ref(evidence_ref, "evidence_ref")
    return await apply(
        parts,
        action,
        lambda: parts.registry.record_ground(
            action.case.id,
            kind=ground,
            category=category,
            provider_org_id=provider_org_id,
            evidence_ref=evidence_ref,
        ),
    )


__all__ = ["MAX_PARTICIPANTS", "add_participant", "record_ground", "start_triage", "triage"]
