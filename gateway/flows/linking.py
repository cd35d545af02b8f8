"""The case node's side of case links: telling each peer node its link.

A peer node answers this node about a case only within the link it holds
(:mod:`gateway.flows.links`), so whenever the participants at a peer node
change, or the case closes, this node tells that node its link: the case,
the subject in that node's domain, the activity, the phase, its partners
that take part, and the organisation types of all participants.

- Acceptance (:func:`linked_apply` from triage) and adding a participant
  tell every peer node with participants *before* the registry changes the
  case. A node whose participant is new must take its link: when it is
  down or refuses, the call fails (UNAVAILABLE or FAILED_PRECONDITION) and
  nothing changes here. The procesregisseur retries; links are idempotent,
  so a node that took the link the first time takes it again unchanged.
  The other nodes are told on a best-effort basis: a node that missed an
  update holds a narrower link, which refuses rather than releases.
- Closure (:func:`tell_links` from afschaling) tells every peer node on a
  best-effort basis after the case closed here: closure never waits for a
  peer.

Each link told is audited before it leaves (the peer node as requester,
the procesregisseur as provider); one that did not arrive gets a second
record with status ERROR.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from schakel.v1 import common_pb2, federation_pb2

from certs.identity import Identity, PeerKind
from gateway.cases import Case, Participant
from gateway.cases.phases import TRANSITIONS, Action
from gateway.deadline import Deadline
from gateway.errors import (
    InvalidInputError,
    NotConfiguredError,
    SchakelError,
    UnavailableError,
    WrongStateError,
    quote,
)
from gateway.federation.client import DEADLINE, DOWN, PeerCallError
from gateway.flows.crossing import Crossing, record
from gateway.flows.delivery import not_arrived, participant_proto
from gateway.flows.regie import CaseAction
from gateway.logging import get_logger
from policy.vocabulary import Phase

if TYPE_CHECKING:
    from gateway.parts import NodeParts

log = get_logger("linking")

METHOD = "schakel.v1.FederationService/LinkCase"
DEADLINE_SECONDS = 5.0
"""How long a peer node has to take its link, retries included."""


def peer_nodes(case: Case, node_id: str) -> dict[str, list[Participant]]:
    """The case's participants per peer node (this node ``node_id`` left out)."""
    nodes: dict[str, list[Participant]] = {}
    for p in case.participants:
        if p.node_id != node_id:
            nodes.setdefault(p.node_id, []).append(p)
    return nodes


def _node(node_id: str) -> Identity:
    """A peer node as the requester of what it is told, in the audit record."""
    return Identity(PeerKind.NODE, node_id, "", "node", frozenset(), "")


async def tell_links(
    parts: NodeParts,
    caller: Identity,
    case: Case,
    *,
    activity_uri: str,
    required: Iterable[str] = (),
    deadline: Deadline | None = None,
) -> None:
    """Tell every peer node with participants in ``case`` its link as ``case`` says it.

    Each node gets at most :data:`DEADLINE_SECONDS`, and no longer than
    ``deadline`` (the call's own) leaves: a frozen peer cannot hold the call.

    ``case`` is the case as it is (closure) or is about to be (acceptance,
    a new participant); ``caller`` is the procesregisseur. Raises
    UnavailableError (down) or WrongStateError (refused) when a node in
    ``required`` did not take its link; the others are told best-effort.
    """
    nodes = peer_nodes(case, parts.node_id)
    must = set(required)
    if not nodes:
        return
    peers, subjects = parts.peers, parts.subjects
    if subjects is None or (peers is None and must):
        raise NotConfiguredError(
            "this node has no peer nodes or no pseudonym keys to link participants at "
            f"node(s) {', '.join(sorted(nodes))}"
        )
    if peers is None:
        log.warning("links_no_federation", case_id=case.id, nodes=len(nodes))
        return
    listed = {p.node_id for p in peers.peers()}
    unknown = sorted(must - listed)
    if unknown:
        raise InvalidInputError(
            f"participant node {quote(unknown[0])} is not a peer node of this node"
        )
    types = sorted({p.org_type for p in case.participants})
    limit = DEADLINE_SECONDS if deadline is None else min(DEADLINE_SECONDS, deadline.left())
    results = await asyncio.gather(
        *(
            _tell(
                parts,
                caller,
                case,
                node_id=node_id,
                there=there,
                types=types,
                activity_uri=activity_uri,
                limit=limit,
            )
            for node_id, there in sorted(nodes.items())
        )
    )
    failed = {node_id: reason for node_id, reason in results if reason}
    missed = sorted(must & set(failed))
    if not missed:
        return
    down = [n for n in missed if failed[n] in (DOWN, DEADLINE)]
    if down:
        raise UnavailableError(
            f"node(s) {', '.join(down)} could not be told of case {case.id}'s participants "
            f"({failed[down[0]]}); nothing changed here; try again"
        )
    raise WrongStateError(
        f"node(s) {', '.join(missed)} refused the link for case {case.id}; nothing changed here"
    )


async def _tell(
    parts: NodeParts,
    caller: Identity,
    case: Case,
    *,
    node_id: str,
    there: list[Participant],
    types: list[str],
    activity_uri: str,
    limit: float,
) -> tuple[str, str]:
    """Audit, then send one node its link; (node id, "" or the reason it did not arrive)."""
    subjects, peers = parts.subjects, parts.peers
    assert subjects is not None and peers is not None
    case_ref = common_pb2.CaseRef(node_id=parts.node_id, case_id=case.id)
    told = Crossing(
        name=METHOD,
        caller=_node(node_id),
        activity=case.activity,
        activity_uri=activity_uri,
        phase=case.phase.to_proto(),
        case_ref=case_ref,
        subject=case.subject,
        provider=caller.uri,
    )
    await record(parts.audit, told)
    request = federation_pb2.LinkCaseRequest(
        purpose=common_pb2.Purpose(processing_activity_id=case.activity),
        case_ref=case_ref,
        subject=await subjects.for_domain_from_pseudonym(case.subject, node_id, case.activity),
        phase=case.phase.to_proto(),
        participants=[participant_proto(p) for p in there],
        participant_org_types=types,
    )
    try:
        await peers.link_case(node_id, request, deadline=limit)
    except PeerCallError as exc:
        log.warning("link_not_taken", case_id=case.id, node=node_id, reason=exc.reason)
        await not_arrived(parts.audit, told)
        return node_id, exc.reason
    return node_id, ""


async def linked_apply(
    parts: NodeParts,
    action: CaseAction,
    after: Case,
    *,
    move: Action,
    required: Iterable[str],
    change: Callable[[], Case],
) -> Case:
    """Audit ``action``, tell the peer nodes their links as ``after`` says, then ``change``.

    When the case is not in a phase ``move`` is allowed in, no peer is told
    and the registry refuses the change. When a node in ``required`` does
    not take its link, the action is refused (audited) and nothing changes.
    """
    await record(parts.audit, action.crossing)
    try:
        if action.case.phase in TRANSITIONS[move].allowed:
            await tell_links(
                parts,
                action.call.caller,
                after,
                activity_uri=action.activity.uri,
                required=required,
            )
        return await asyncio.to_thread(change)
    except SchakelError:
        # Written whether or not a link's own refusal was recorded first.
        await record(parts.audit, action.crossing, ok=False)
        raise


def as_accepted(case: Case, participants: Iterable[Participant]) -> Case:
    """``case`` as acceptance with ``participants`` will make it, for telling links."""
    return dataclasses.replace(case, phase=Phase.CASUSOVERLEG, participants=tuple(participants))


def with_participant(case: Case, participant: Participant) -> Case:
    """``case`` with ``participant`` added (if not there yet), for telling links."""
    if participant in case.participants:
        return case
    return dataclasses.replace(case, participants=(*case.participants, participant))


__all__ = [
    "DEADLINE_SECONDS",
    "METHOD",
    "as_accepted",
    "linked_apply",
    "peer_nodes",
    "tell_links",
    "with_participant",
]
