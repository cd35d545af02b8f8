"""Overdracht: the procesregisseur hands an open case over to another ZVH node.

When the person moves, the case moves to the node of the new region
(DESIGN.md §4, flow 6). The hand-over discloses the subject, the theme and
the bottleneck tags to another ZVH, so policy decides it (category
``overdracht``, provider and recipient ``zvh``, in the case's phase). Then:

1. the release is audited before anything leaves (log-before-release), with
   the target node as requester and the procesregisseur as provider;
2. the peer's ``FederationService.TransferCase`` is called with the subject
   transcrypted to the target's domain, retried by the
   :class:`~gateway.federation.PeerClient` while the peer is unreachable,
   under an idempotency key derived from the case and the caller's key;
3. the local case is closed with outcome :data:`OUTCOME` and the target's
   case id is recorded with it (``case_transfers``), in one transaction;
4. a second record, whose ``case_ref`` is the case at the target, lets the
   FG follow the case there.

A call that fails after step 1 appends the release record again with status
ERROR, so the log shows the attempt was not completed; the case stays open.
A retry with the same key after success finds the recorded hand-over and
returns it without calling the peer or closing anything again.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

import grpc
from schakel.v1 import common_pb2

from certs.identity import Identity, PeerKind
from gateway.cases import Case, CaseError, CaseInputError, Transfer
from gateway.cases.model import check_code, check_id
from gateway.federation.client import DEADLINE, DOWN, PeerCallError
from gateway.flows.crossing import AUDIT_FAILED, Crossing, append
from gateway.logging import get_logger
from gateway.rpc.status import status_of
from policy.evaluator import Request

if TYPE_CHECKING:
    from gateway.parts import NodeParts

log = get_logger("overdracht")

METHOD = "schakel.v1.CaseService/HandOverCase"
CATEGORY = "overdracht"
"""The policy category of a hand-over: theme and bottleneck tags, the subject beside them."""
OUTCOME = "overgedragen-andere-zvh"
"""The outcome the local case closes with."""
ZVH = "zvh"
DEADLINE_SECONDS = 5.0
"""How long the target node has to take the case over, retries included."""
MAX_KEY_LENGTH = 64

_KEY = re.compile(rf"^[\x21-\x7e]{{1,{MAX_KEY_LENGTH}}}$")


class HandOverError(Exception):
    """A hand-over refused or not completed: the gRPC status and a message safe to return."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class HandOver:
    """The result of a hand-over."""

    case: Case
    """The local case, closed with :data:`OUTCOME`."""
    remote_case_ref: common_pb2.CaseRef
    """The case at the target node."""
    created: bool
    """True when this call handed the case over; False for a retry of an earlier one."""


def _check_input(parts: NodeParts, target: str, key: str, reason_code: str) -> None:
    """Refuse a malformed request before anything is looked up or written."""
    if not target:
        raise HandOverError(grpc.StatusCode.INVALID_ARGUMENT, "target_node_id is required")
    try:
        check_id(target, "target_node_id")
        check_code(reason_code, "reason_code")
    except CaseInputError as exc:
        raise HandOverError(grpc.StatusCode.INVALID_ARGUMENT, str(exc)) from exc
    if target == parts.node_id:
        raise HandOverError(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"target_node_id is this node {parts.node_id!r}; a case is handed over to another node",
        )
    if not _KEY.match(key):
        raise HandOverError(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"idempotency_key must be 1-{MAX_KEY_LENGTH} printable ASCII characters, no spaces",
        )


def _check_target(parts: NodeParts, target: str) -> None:
    if parts.peers is None:
        raise HandOverError(
            grpc.StatusCode.FAILED_PRECONDITION,
            "this node has no peer nodes ([federation] or [[peers]]) to hand a case over to",
        )
    listed = sorted(p.node_id for p in parts.peers.peers())
    if target not in listed:
        raise HandOverError(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"target_node_id {target!r} is not a peer node of this node; "
            f"known: {', '.join(listed) or 'none'}",
        )


def _node(node_id: str) -> Identity:
    """The target node as the requester of the release in the audit record."""
    return Identity(PeerKind.NODE, node_id, "", "node", frozenset(), "")


async def _audit(parts: NodeParts, crossing: Crossing, *, ok: bool = True) -> None:
    if await append(parts.audit, crossing, ok=ok) is None:
        raise HandOverError(grpc.StatusCode.UNAVAILABLE, AUDIT_FAILED)


async def hand_over(
    parts: NodeParts,
    case: Case,
    *,
    activity_uri: str,
    target: str,
    idempotency_key: str,
    reason_code: str,
    caller: Identity,
    retention_days: int,
    deadline: float = DEADLINE_SECONDS,
) -> HandOver:
    """Hand ``case`` over to node ``target``; raise HandOverError when it is not done.

    ``caller`` is the procesregisseur (from the verified certificate);
    ``retention_days`` starts on the local case when it closes.
    """
    _check_input(parts, target, idempotency_key, reason_code)
    local = common_pb2.CaseRef(node_id=parts.node_id, case_id=case.id)
    release = Crossing(
        name=METHOD,
        caller=_node(target),
        activity=case.activity,
        activity_uri=activity_uri,
        phase=case.phase.to_proto(),
        case_ref=local,
        subject=case.subject,
        categories=(CATEGORY,),
        provider=caller.uri,
    )
    if not case.is_open:
        return await _retried(parts, case, release, target, idempotency_key)
    _check_target(parts, target)
    if parts.policy is None or parts.subjects is None:
        raise HandOverError(
            grpc.StatusCode.FAILED_PRECONDITION,
            "this node has no policy bundle or no pseudonym keys configured",
        )
    decision = parts.policy.decide(
        Request(
            activity=case.activity,
            phase=case.phase.value,
            provider=ZVH,
            recipient=ZVH,
            categories=(CATEGORY,),
            case_accepted=case.accepted_at is not None,
        )
    )
    release.decision = decision.to_proto()
    if CATEGORY not in decision.released:
        await _audit(parts, release, ok=False)
        reason = dict(decision.withheld).get(CATEGORY, "")
        raise HandOverError(
            grpc.StatusCode.PERMISSION_DENIED,
            f"policy does not allow handing over a {case.activity} case in phase "
            f"{case.phase.value} ({reason})",
        )
    subjects, peers = parts.subjects, parts.peers
    assert peers is not None
    subject = await asyncio.to_thread(subjects.for_domain_from_pseudonym, case.subject, target)
    await _audit(parts, release)
    try:
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
            deadline=deadline,
        )
    except PeerCallError as exc:
        await _audit(parts, release, ok=False)
        if exc.reason in (DOWN, DEADLINE):
            raise HandOverError(
                grpc.StatusCode.UNAVAILABLE,
                f"node {target!r} could not take the case over ({exc.reason}); case {case.id} "
                "stays open here; retry with the same idempotency_key",
            ) from exc
        raise HandOverError(
            grpc.StatusCode.FAILED_PRECONDITION,
            f"node {target!r} refused the case; case {case.id} stays open here",
        ) from exc
    transfer = Transfer(target, idempotency_key, reason_code, reply.case_ref.case_id)
    remote = common_pb2.CaseRef(node_id=target, case_id=reply.case_ref.case_id)
    try:
        if reply.case_ref.node_id != target:
            raise CaseInputError(f"the case reference names node {reply.case_ref.node_id!r}")
        transfer.check()
    except CaseInputError as exc:
        await _audit(parts, release, ok=False)
        raise HandOverError(
            grpc.StatusCode.FAILED_PRECONDITION,
            f"node {target!r} answered with an unusable case reference ({exc}); "
            f"case {case.id} stays open here",
        ) from exc
    try:
        closed = await asyncio.to_thread(
            parts.registry.hand_over,
            case.id,
            transfer,
            outcome=OUTCOME,
            retention_days=retention_days,
        )
    except CaseError as exc:
        earlier = await asyncio.to_thread(parts.registry.transfer_of, case.id)
        if earlier is not None and earlier.idempotency_key == idempotency_key:
            # A concurrent retry closed it first; answer as that retry's twin.
            now = await asyncio.to_thread(parts.registry.get, case.id)
            return await _retried(parts, now, release, target, idempotency_key)
        release.case_ref = remote
        await _audit(parts, release, ok=False)
        raise HandOverError(
            status_of(exc),
            f"{exc}; node {target!r} already opened it as case {remote.case_id}, which the "
            "audit log records",
        ) from exc
    release.case_ref = remote
    try:
        await _audit(parts, release)
    except HandOverError as exc:
        raise HandOverError(
            grpc.StatusCode.UNAVAILABLE,
            f"case {case.id} was handed over, but the record of where it went could not be "
            "written; retry with the same idempotency_key to write it",
        ) from exc
    log.info("case_handed_over", case_id=case.id, node=target, remote_case_id=remote.case_id)
    return HandOver(closed, remote, created=True)


async def _retried(
    parts: NodeParts, case: Case, release: Crossing, target: str, idempotency_key: str
) -> HandOver:
    """The recorded hand-over a retry asks for, or FAILED_PRECONDITION for a closed case."""
    earlier = await asyncio.to_thread(parts.registry.transfer_of, case.id)
    if earlier is None or earlier.idempotency_key != idempotency_key:
        went = f"; it was handed over to node {earlier.node_id!r}" if earlier else ""
        raise HandOverError(
            grpc.StatusCode.FAILED_PRECONDITION,
            f"case {case.id} is in {case.phase.value} with outcome {case.outcome}{went}; "
            "only an open case can be handed over",
        )
    if earlier.node_id != target:
        raise HandOverError(
            grpc.StatusCode.FAILED_PRECONDITION,
            f"idempotency_key was used to hand case {case.id} over to node "
            f"{earlier.node_id!r}, not {target!r}",
        )
    remote = common_pb2.CaseRef(node_id=earlier.node_id, case_id=earlier.remote_case_id)
    release.case_ref = remote
    await _audit(parts, release)
    return HandOver(case, remote, created=False)


__all__ = ["CATEGORY", "OUTCOME", "HandOver", "HandOverError", "hand_over"]
