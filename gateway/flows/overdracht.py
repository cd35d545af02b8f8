"""Overdracht: the procesregisseur hands an open case over to another ZVH node.

When the person moves, the case moves to the node of the new region. The
hand-over discloses the subject, the theme and the bottleneck tags to
another ZVH, so policy decides it (category ``overdracht``, provider and
recipient the regie, in the case's phase). Then:

1. the release is audited before anything leaves (log-before-release), with
   the target node as requester and the procesregisseur as provider;
2. the peer's ``FederationService.TransferCase`` is called with the subject
   transcrypted to the target's domain, retried by the
   :class:`~gateway.federation.PeerClient` while the peer is unreachable,
   under an idempotency key derived from the case and the caller's key;
3. the local case is closed with outcome :data:`OUTCOME` and the target's
   case id is recorded with it (``case_transfers``), in one transaction;
4. a second record, whose ``case_ref`` is the case at the target, lets the
   FG follow the case there;
5. the local case's participants are told its outcome
   (:func:`gateway.flows.afschaling.tell_outcome`).

One deadline bounds the whole hand-over (the call's gRPC deadline, else
:data:`DEADLINE_SECONDS`): the transfer gets most of it, telling the
outcome the rest; participants it did not reach are named in the answer.

A call that fails after step 1 appends the release record again with status
ERROR, so the log shows the attempt was not completed; the case stays open.
A peer's failure comes back from the federation client as a
:class:`~gateway.federation.client.PeerCallError` and is answered as
UnavailableError (the peer was down or slow: retry) or WrongStateError (the
peer refused).
A retry with the same key after success finds the recorded hand-over and
returns it without calling the peer or closing anything again.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING

from schakel.v1 import common_pb2

from certs.identity import Identity, PeerKind
from gateway.cases import Case, CaseError, CaseInputError, Participant, Transfer
from gateway.cases.model import check_code, check_id
from gateway.deadline import Deadline
from gateway.errors import (
    AuditUnavailableError,
    DeniedError,
    InvalidInputError,
    NotConfiguredError,
    UnavailableError,
    WrongStateError,
    quote,
)
from gateway.federation.client import DEADLINE, DOWN, PeerCallError
from gateway.flows.afschaling import tell_outcome
from gateway.flows.crossing import Crossing, actor_uri, record, refused
from gateway.flows.regie import CaseCall, begin
from gateway.logging import get_logger
from policy.evaluator import Request
from policy.text import TextError, check_token
from policy.vocabulary import REGIE, TRANSFER

if TYPE_CHECKING:
    from gateway.parts import NodeParts

log = get_logger("overdracht")

METHOD = "schakel.v1.CaseService/HandOverCase"
CATEGORY = TRANSFER
"""The policy category of a hand-over: theme and bottleneck tags, the subject beside them."""
OUTCOME = "overgedragen-andere-zvh"
"""The outcome the local case closes with."""
DEADLINE_SECONDS = 6.0
"""How long a hand-over may take when the caller sets no deadline: the target node
gets all but a share of it (:meth:`Deadline.for_questions`) to take the case over,
retries included, and the participants are told the outcome in the rest."""
MAX_KEY_LENGTH = 64


@dataclass(frozen=True)
class HandOver:
    """The result of a hand-over."""

    case: Case
    """The local case, closed with :data:`OUTCOME`."""
    remote_case_ref: common_pb2.CaseRef
    """The case at the target node."""
    created: bool
    """True when this call handed the case over; False for a retry of an earlier one."""
    undelivered: tuple[Participant, ...] = ()
    """Participants at peer nodes the outcome did not reach before the deadline."""


def _check_input(parts: NodeParts, target: str, key: str, reason_code: str) -> None:
    """Refuse a malformed request before anything is looked up or written."""
    if not target:
        raise InvalidInputError("target_node_id is required")
    check_id(target, "target_node_id")
    check_code(reason_code, "reason_code")
    if target == parts.node_id:
        raise InvalidInputError(
            f"target_node_id is this node {parts.node_id!r}; a case is handed over to another node"
        )
    try:
        check_token(key, "idempotency_key", max_length=MAX_KEY_LENGTH)
    except TextError as exc:
        raise InvalidInputError(str(exc)) from None


def _check_target(parts: NodeParts, target: str) -> None:
    if parts.peers is None:
        raise NotConfiguredError(
            "this node has no peer nodes ([federation] or [[peers]]) to hand a case over to"
        )
    listed = sorted(p.node_id for p in parts.peers.peers())
    if target not in listed:
        raise InvalidInputError(
            f"target_node_id {quote(target)} is not a peer node of this node; "
            f"known: {', '.join(listed) or 'none'}"
        )


def _node(node_id: str) -> Identity:
    """The target node as the requester of the release in the audit record."""
    return Identity(PeerKind.NODE, node_id, "", "node", frozenset(), "")


async def hand_over(
    parts: NodeParts,
    call: CaseCall,
    *,
    target: str,
    idempotency_key: str,
    reason_code: str,
) -> HandOver:
    """Hand the case ``call`` names over to node ``target``; a SchakelError when it is not done.

    ``call.caller`` is the procesregisseur (from the verified certificate);
    the retention of the case's activity starts on the local case when it
    closes, and its participants are told the outcome.
    """
    deadline = Deadline.of_call(DEADLINE_SECONDS)
    action = await begin(parts, call)
    case, caller = action.case, call.caller
    _check_input(parts, target, idempotency_key, reason_code)
    local = common_pb2.CaseRef(node_id=parts.node_id, case_id=case.id)
    release = Crossing(
        name=METHOD,
        caller=_node(target),
        activity=case.activity,
        activity_uri=action.activity.uri,
        phase=case.phase.to_proto(),
        case_ref=local,
        subject=case.subject,
        categories=(CATEGORY,),
        provider=actor_uri(caller),
    )
    if not case.is_open:
        return await _retried(parts, case, release, target, idempotency_key)
    _check_target(parts, target)
    if parts.policy is None or parts.subjects is None:
        raise NotConfiguredError("this node has no policy bundle or no pseudonym keys configured")
    decision = parts.policy.decide(
        Request(
            activity=case.activity,
            phase=case.phase.value,
            provider=REGIE,
            recipient=REGIE,
            categories=(CATEGORY,),
            case_accepted=case.accepted_at is not None,
        )
    )
    release.decision = decision.to_proto()
    if CATEGORY not in decision.released:
        reason = dict(decision.withheld).get(CATEGORY, "")
        raise await refused(
            parts.audit,
            release,
            DeniedError(
                f"policy does not allow handing over a {case.activity} case in phase "
                f"{case.phase.value} ({reason})"
            ),
        )
    subjects, peers = parts.subjects, parts.peers
    assert peers is not None
    subject = await subjects.for_domain_from_pseudonym(case.subject, target, case.activity)
    await record(parts.audit, release)
    transfer_left = deadline.for_questions().left()
    try:
        if transfer_left <= 0:
            raise PeerCallError(target, DEADLINE, None)
        reply = await peers.transfer_case(
            to=target,
            purpose=case.activity,
            case_ref=local,
            subject=subject,
            theme=case.theme,
            phase=case.phase.to_proto(),
            bottlenecks=case.bottlenecks,
            # Scoped to the case: the same key on two cases must not meet at the peer.
            idempotency_key=f"{case.id}:{idempotency_key}",
            deadline=transfer_left,
        )
    except PeerCallError as exc:
        if exc.reason in (DOWN, DEADLINE):
            raise await refused(
                parts.audit,
                release,
                UnavailableError(
                    f"node {target!r} could not take the case over ({exc.reason}); case "
                    f"{case.id} stays open here; retry with the same idempotency_key"
                ),
            ) from exc
        raise await refused(
            parts.audit,
            release,
            WrongStateError(f"node {target!r} refused the case; case {case.id} stays open here"),
        ) from exc
    transfer = Transfer(target, idempotency_key, reason_code, reply.case_ref.case_id)
    remote = common_pb2.CaseRef(node_id=target, case_id=reply.case_ref.case_id)
    try:
        if reply.case_ref.node_id != target:
            raise CaseInputError(f"the case reference names node {quote(reply.case_ref.node_id)}")
        transfer.check()
    except CaseInputError as exc:
        raise await refused(
            parts.audit,
            release,
            WrongStateError(
                f"node {target!r} answered with an unusable case reference ({exc.message}); "
                f"case {case.id} stays open here"
            ),
        ) from exc
    try:
        closed = await asyncio.to_thread(
            parts.registry.hand_over,
            case.id,
            transfer,
            outcome=OUTCOME,
            retention_days=action.retention_days,
        )
    except CaseError as exc:
        earlier = await asyncio.to_thread(parts.registry.transfer_of, case.id)
        if earlier is not None and earlier.idempotency_key == idempotency_key:
            # A concurrent retry closed it first; answer as that retry's twin.
            now = await asyncio.to_thread(parts.registry.get, case.id)
            return await _retried(parts, now, release, target, idempotency_key)
        release.case_ref = remote
        raise await refused(
            parts.audit,
            release,
            type(exc)(
                f"{exc.message}; node {target!r} already opened it as case {remote.case_id}, "
                "which the audit log records"
            ),
        ) from exc
    release.case_ref = remote
    try:
        await record(parts.audit, release)
    except AuditUnavailableError as exc:
        raise AuditUnavailableError(
            f"case {case.id} was handed over, but the record of where it went could not be "
            "written; retry with the same idempotency_key to write it"
        ) from exc
    log.info("case_handed_over", case_id=case.id, node=target, remote_case_id=remote.case_id)
    undelivered = await tell_outcome(parts, caller, closed, action.activity.uri, deadline)
    return HandOver(closed, remote, created=True, undelivered=undelivered)


async def _retried(
    parts: NodeParts, case: Case, release: Crossing, target: str, idempotency_key: str
) -> HandOver:
    """The recorded hand-over a retry asks for, or WrongStateError for a closed case."""
    earlier = await asyncio.to_thread(parts.registry.transfer_of, case.id)
    if earlier is None or earlier.idempotency_key != idempotency_key:
        went = f"; it was handed over to node {earlier.node_id!r}" if earlier else ""
        raise WrongStateError(
            f"case {case.id} is in {case.phase.value} with outcome {case.outcome}{went}; "
            "only an open case can be handed over"
        )
    if earlier.node_id != target:
        raise WrongStateError(
            f"idempotency_key was used to hand case {case.id} over to node "
            f"{earlier.node_id!r}, not {target!r}"
        )
    remote = common_pb2.CaseRef(node_id=earlier.node_id, case_id=earlier.remote_case_id)
    release.case_ref = remote
    await record(parts.audit, release)
    return HandOver(case, remote, created=False)


__all__ = ["CATEGORY", "OUTCOME", "HandOver", "hand_over"]
