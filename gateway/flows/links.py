"""Case links at this node: a peer's case made known (LinkCase), and the checks every
peer case call passes against the link.

This node answers a peer about a case only within the link the case node
made (:mod:`gateway.cases.links`). What the peer states in a request is
compared with the link, never believed: the subject, the purpose (the
link's activity), the phase, the recipients (organisation types of the
case's participants, or the procesregisseur) and the providers. A closed
link gives nothing. A ground the peer states is kept on the link as that
node's assertion, audited with the peer as requester, and counts only for
that link and that provider.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterable
from typing import TYPE_CHECKING

from schakel.v1 import common_pb2, federation_pb2, partner_pb2

from certs.identity import Identity
from gateway.cases import Participant
from gateway.cases.errors import LinkClosedError
from gateway.cases.links import LINK_PHASES, CaseLink, LinkState
from gateway.errors import DeniedError, InvalidInputError, WrongStateError, quote
from gateway.flows import inbound
from gateway.flows.crossing import Crossing, record
from gateway.flows.participants import check_partner, participant_uri
from policy.model import GROUND_BASIS, Ground
from policy.vocabulary import ORG_TYPES, REGIE, Phase

if TYPE_CHECKING:
    from gateway.parts import NodeParts

ASSERTED = "asserted-grounds"
"""The suffix of the audit name of a peer's grounds kept on a link."""


async def take_link(
    parts: NodeParts, caller: Identity, request: federation_pb2.LinkCaseRequest
) -> bool:
    """Make or update the caller's link for its case; True when anything changed.

    The participants must be this node's ``[[partners]]`` of the types
    listed, and the activity one of this node's policy bundle, whose
    retention (facts or links, the longer) the link keeps after closure.
    """
    crossing = inbound.open_crossing(parts, caller, "LinkCase", request.phase)
    pseudonym = inbound.open_subject(parts, crossing, request.subject)
    activity = inbound.check_caller(parts, crossing, request.purpose, request.case_ref)
    # The case node tells this node the subject and who takes part: it provides.
    crossing.provider = inbound.node_uri(caller.node_id)
    phase = _phase(request.phase)
    if not request.participants:
        raise InvalidInputError("participants must name at least one partner of this node")
    named = [
        check_partner(parts.config, p, f"participants[{i}]")
        for i, p in enumerate(request.participants)
    ]
    if len({p.org_id for p in named}) != len(named):
        raise InvalidInputError("participants lists an organisation twice")
    types = inbound.check_codes(request.participant_org_types, "participant_org_types")
    unknown = [t for t in types if t not in ORG_TYPES]
    if unknown:
        raise InvalidInputError(
            f"participant_org_types: {quote(unknown[0])} is not an organisation type"
        )
    if {p.org_type for p in named} - set(types):
        raise InvalidInputError("participant_org_types must include the participants' types")
    policy = inbound.require_policy(parts)
    served = policy.evaluator.policy.bundle.activities.get(activity)
    if served is None:
        raise DeniedError(f"this node's policy serves no activity {quote(activity)}")
    retention = served.retention
    state = LinkState(
        node_id=caller.node_id,
        case_id=request.case_ref.case_id,
        subject=pseudonym,
        activity=activity,
        phase=phase,
        participants=tuple(Participant(p.org_id, p.org_type, p.node_id) for p in named),
        org_types=frozenset(types),
    )
    await record(parts.audit, crossing)
    return await asyncio.to_thread(
        parts.links.hold, state, retention_days=max(retention.facts_days, retention.links_days)
    )


def _phase(value: int) -> Phase:
    try:
        phase = Phase.from_proto(value)
    except ValueError:
        phase = None
    if phase not in LINK_PHASES:
        raise InvalidInputError(
            "phase must be PHASE_CASUSOVERLEG (the case is open) or PHASE_AFSCHALING (closed)"
        )
    return phase


async def held_link(
    parts: NodeParts,
    crossing: Crossing,
    case_ref: common_pb2.CaseRef,
    pseudonym: str,
    *,
    phase: int,
    gives: bool,
) -> CaseLink:
    """The caller's link for ``case_ref``, checked against what the request states.

    Refused (DeniedError) without a link, or for another subject or purpose
    than the link's; refused (WrongStateError) in another phase than the
    link's, and when ``gives`` (the call would release something of this
    node's) on a closed link.
    """
    caller = crossing.caller.node_id
    link = await asyncio.to_thread(parts.links.get, caller, case_ref.case_id)
    if link is None:
        raise DeniedError(
            f"this node holds no link for case {case_ref.case_id} of node {quote(caller)}: it "
            "answers about a case only once the case node made a partner here a participant"
        )
    if gives and not link.is_open:
        raise LinkClosedError(
            f"case {link.case_id} of node {caller} is closed; its link gives nothing"
        )
    if pseudonym != link.subject:
        raise DeniedError(f"the subject is not the subject of linked case {link.case_id}")
    if crossing.activity != link.activity:
        raise DeniedError(
            f"purpose {quote(crossing.activity)} is not activity {link.activity!r}, "
            f"which case {link.case_id} was linked for"
        )
    asked = Phase.from_proto(phase) if phase in common_pb2.Phase.values() and phase else None
    if asked is not link.phase:
        if not link.is_open:
            raise LinkClosedError(f"case {link.case_id} of node {caller} is closed")
        stated = asked.value if asked is not None else "none"
        raise WrongStateError(
            f"phase {stated} is not {link.phase.value}, the phase case {link.case_id} is linked in"
        )
    return link


def check_recipients(link: CaseLink, types: Iterable[str]) -> None:
    """Each recipient type is the procesregisseur's or one of the case's participants'."""
    others = [t for t in types if t != REGIE and t not in link.org_types]
    if others:
        raise DeniedError(
            f"recipient type {quote(others[0])} is not the type of a participant "
            f"of linked case {link.case_id}"
        )


def check_participant(link: CaseLink, participant: common_pb2.Participant, field: str) -> None:
    """``participant`` (a partner of this node) takes part in the linked case."""
    if not link.participant(participant.org_id, participant.org_type):
        raise DeniedError(
            f"{field} {quote(participant.org_id)} does not take part in linked case {link.case_id}"
        )


def check_provider(parts: NodeParts, link: CaseLink, provider: common_pb2.Participant) -> None:
    """A delivery's provider: the calling node itself for the regie, else a participant.

    A provider of this node must take part in the linked case; one of
    another node must be of a participant's type.
    """
    if provider.org_type == REGIE:
        if provider.node_id != link.node_id or provider.org_id != link.node_id:
            raise DeniedError(
                f"provider {quote(provider.org_id)} of type {REGIE!r} is not the calling node "
                f"{link.node_id!r}: a node provides only as itself"
            )
    elif provider.node_id == parts.node_id:
        check_participant(link, provider, "provider")
    elif provider.org_type not in link.org_types:
        raise DeniedError(
            f"provider type {quote(provider.org_type)} is not the type of a participant "
            f"of linked case {link.case_id}"
        )


async def asserted_grounds(
    parts: NodeParts,
    crossing: Crossing,
    link: CaseLink,
    provider: Participant,
    stated: frozenset[tuple[str, str]],
) -> frozenset[tuple[str, str]]:
    """Keep the peer's ``stated`` grounds for ``provider`` on ``link``; all it asserted there.

    The assertion is audited first, with the peer as requester and the
    provider as provider, so the FG can tell whose word a release relied on.
    """
    if stated:
        kinds = sorted({GROUND_BASIS[Ground(k)] for _c, k in stated})
        assertion = dataclasses.replace(
            crossing,
            name=f"{crossing.name}/{ASSERTED}",
            categories=tuple(sorted({c for c, _k in stated})),
            provider=participant_uri(provider),
            decision=common_pb2.DecisionSummary(
                legal_basis=common_pb2.LegalBasis(code=",".join(kinds))
            ),
        )
        await record(parts.audit, assertion)
        await asyncio.to_thread(parts.links.assert_grounds, link, provider, stated)
    return await asyncio.to_thread(parts.links.grounds, link, provider)


def shown(grounds: Iterable[tuple[str, str]], node_id: str) -> list[partner_pb2.AssertedGround]:
    """Grounds as a partner's fact question shows them, with the node that states them."""
    return [
        partner_pb2.AssertedGround(category=c, kind=k, node_id=node_id) for c, k in sorted(grounds)
    ]


__all__ = [
    "ASSERTED",
    "asserted_grounds",
    "check_participant",
    "check_provider",
    "check_recipients",
    "held_link",
    "shown",
    "take_link",
]
