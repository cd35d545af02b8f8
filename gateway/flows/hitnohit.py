"""The hit/no-hit round of a case: who knows the subject, and whom to contact.

A round asks, in parallel and under one deadline, every local partner of the
node (from ``[[partners]]``, except the referrer) through a HIT_QUERY task on
its task stream, and every peer node through the federation's
:class:`gateway.federation.PeerClient`. Each receives the subject
transcrypted to its own domain. A partner's answer is judged by policy in
``AnswerHit`` (category ``bekend`` from its org type to the regie) and
audited there; a withheld answer reaches the round as :class:`Withheld`.
Whoever has not answered by the deadline is named in ``unanswered``, so a
partner or peer that is down makes the answer partial, not late.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from schakel.v1 import case_pb2, common_pb2, partner_pb2

from certs.identity import Identity
from gateway.cases import Case, CaseError, Hit
from gateway.cases.steps import Step, check_step
from gateway.config import PartnerOrgSection
from gateway.deadline import Deadline
from gateway.errors import NotConfiguredError
from gateway.federation.client import FanOut, PeerHit
from gateway.flows.crossing import Crossing, record
from gateway.flows.regie import CaseCall, begin, deadline_seconds
from gateway.logging import get_logger
from gateway.tasks.broker import Withheld
from gateway.tracing import current_trace_proto
from policy.text import TextError, check_contact
from policy.vocabulary import BEKEND

if TYPE_CHECKING:
    from gateway.parts import NodeParts

log = get_logger("hitnohit")

DEFAULT_DEADLINE_MS = 2000
DEFAULT_DEADLINE_SECONDS = DEFAULT_DEADLINE_MS / 1000
LEAST_SECONDS_TO_ASK = 0.01
"""What a round gives its questions when writing its record used up the deadline:
they are then answered "deadline", never a failure of the round."""
ROUND_METHOD = "schakel.v1.CaseService/RunHitNoHit"
"""The audit name of a round, whether a referral or the procesregisseur started it."""
UNANSWERED_DEADLINE = "deadline"
UNANSWERED_NO_STREAM = "no task stream"
UNANSWERED_WITHHELD = "withheld by policy"
UNANSWERED_MALFORMED = "malformed answer"


@dataclass
class RoundResult:
    """Who knows the subject (hits), who does not, and who did not answer in time."""

    hits: list[Hit] = field(default_factory=list)
    no_hit: list[str] = field(default_factory=list)
    unanswered: dict[str, str] = field(default_factory=dict)
    """Organisation or node id -> reason (deadline, down, refused, withheld by policy)."""

    def to_proto(self, case_ref: common_pb2.CaseRef) -> case_pb2.HitNoHitResult:
        """The CaseService answer."""
        return case_pb2.HitNoHitResult(
            case_ref=case_ref,
            hits=[
                partner_pb2.Hit(org_id=h.org_id, node_id=h.node_id, contact_handle=h.contact_handle)
                for h in self.hits
            ],
            no_hit=sorted(self.no_hit),
            unanswered=sorted(self.unanswered),
        )


async def ask_again(parts: NodeParts, call: CaseCall, deadline_ms: int) -> RoundResult:
    """The procesregisseur's round for the case ``call`` names, before the case meeting.

    ``deadline_ms`` bounds the whole round (0 for the default), as does the
    call's own gRPC deadline; the case must be in aanmelding or triage.
    """
    action = await begin(parts, call)
    deadline = Deadline.of_call(deadline_seconds(deadline_ms, DEFAULT_DEADLINE_MS))
    check_step(action.case, Step.HIT_NO_HIT)
    return await run_round(
        parts, action.case, caller=call.caller, method=call.name, deadline=deadline
    )


async def run_round(
    parts: NodeParts,
    case: Case,
    *,
    caller: Identity,
    method: str,
    deadline: Deadline | None = None,
) -> RoundResult:
    """Ask local partners and peer nodes about the subject of ``case`` by ``deadline``
    (:data:`DEFAULT_DEADLINE_SECONDS` from now when None); record the hits.

    The round's own audit record (the subject leaving to partners and peers)
    is written before any question goes out; AuditUnavailableError when it
    cannot be, NotConfiguredError without pseudonym keys.
    """
    deadline = deadline or Deadline.after(DEFAULT_DEADLINE_SECONDS)
    subjects = parts.subjects
    if subjects is None:
        raise NotConfiguredError(
            "this node has no pseudonym keys configured ([[transcryptors]], pseudonyms.domain_key)"
        )
    case_ref = common_pb2.CaseRef(node_id=parts.node_id, case_id=case.id)
    activity = None
    if parts.policy is not None:
        activity = parts.policy.evaluator.policy.bundle.activities.get(case.activity)
    crossing = Crossing(
        name=method,
        caller=caller,
        activity=case.activity,
        activity_uri=activity.uri if activity is not None else "",
        phase=case.phase.to_proto(),
        case_ref=case_ref,
        subject=case.subject,
        categories=(BEKEND,),
    )
    await record(parts.audit, crossing)
    partners = [p for p in parts.config.partners if p.id != case.referrer_org_id]
    peer_ids = [p.node_id for p in parts.peers.peers()] if parts.peers is not None else []
    # One conversion through the chain for every partner and peer asked.
    moved = await subjects.for_domains_from_pseudonym(
        case.subject, [p.id for p in partners] + peer_ids, case.activity
    )
    remaining = max(deadline.left(), LEAST_SECONDS_TO_ASK)
    local = _ask_partners(parts, case, case_ref, partners, moved=moved, timeout=remaining)
    peers = _ask_peers(parts, case, case_ref, moved=moved, peer_ids=peer_ids, timeout=remaining)
    result = RoundResult()
    local_answers, peer_answers = await asyncio.gather(local, peers)
    for org_id, answer in local_answers.items():
        if isinstance(answer, str):
            result.unanswered[org_id] = answer
        elif answer.known:
            result.hits.append(Hit(org_id, parts.node_id, answer.contact_handle))
        else:
            result.no_hit.append(org_id)
    for node_id, peer in peer_answers.answers.items():
        if peer.hit and not _is_contact(peer.contact_handle):
            # A peer's contact is checked like our own: one that is not a handle is not
            # passed on to the procesregisseur or recorded.
            result.unanswered[node_id] = UNANSWERED_MALFORMED
        elif peer.hit:
            result.hits.append(Hit("", node_id, peer.contact_handle))
        else:
            result.no_hit.append(node_id)
    result.unanswered.update(peer_answers.unanswered)
    if result.hits:
        try:
            # One transaction (one commit) for the whole round, not one per hit.
            await asyncio.to_thread(parts.registry.record_hits, case.id, result.hits)
        except CaseError as exc:
            # The case moved on (closed) while the round ran; the answer still stands.
            log.warning("hit_not_recorded", case_id=case.id, reason=type(exc).__name__)
    log.info(
        "hit_no_hit_round",
        case_id=case.id,
        hits=len(result.hits),
        no_hit=len(result.no_hit),
        unanswered=len(result.unanswered),
    )
    return result


async def _ask_partners(
    parts: NodeParts,
    case: Case,
    case_ref: common_pb2.CaseRef,
    partners: list[PartnerOrgSection],
    *,
    moved: dict[str, common_pb2.EncryptedPseudonym],
    timeout: float,
) -> dict[str, partner_pb2.AnswerHitRequest | str]:
    """Org id -> its released answer, or the reason it has none."""
    broker = parts.tasks
    sent = []
    for org_id in [p.id for p in partners]:
        subject = moved[org_id]
        task = partner_pb2.PartnerTask(
            kind=partner_pb2.TASK_KIND_HIT_QUERY,
            purpose=common_pb2.Purpose(processing_activity_id=case.activity),
            case_ref=case_ref,
            phase=case.phase.to_proto(),
            subject=subject,
            categories=[BEKEND],
            trace=current_trace_proto(),
        )
        pending = await broker.send(org_id, task, subject=case.subject, timeout=timeout)
        sent.append((org_id, pending))
    answers = await asyncio.gather(*(broker.wait(pending) for _, pending in sent))
    out: dict[str, partner_pb2.AnswerHitRequest | str] = {}
    for (org_id, pending), answer in zip(sent, answers, strict=True):
        if isinstance(answer, partner_pb2.AnswerHitRequest):
            out[org_id] = answer
        elif isinstance(answer, Withheld):
            out[org_id] = UNANSWERED_WITHHELD
        elif await broker.taken(pending):
            out[org_id] = UNANSWERED_DEADLINE
        else:
            # No stream on any replica took the question before its deadline.
            out[org_id] = UNANSWERED_NO_STREAM
    return out


def _is_contact(handle: str) -> bool:
    """Whether ``handle`` is a contact handle (:func:`policy.text.check_contact`)."""
    try:
        check_contact(handle)
    except TextError:
        return False
    return True


async def _ask_peers(
    parts: NodeParts,
    case: Case,
    case_ref: common_pb2.CaseRef,
    *,
    moved: dict[str, common_pb2.EncryptedPseudonym],
    peer_ids: list[str],
    timeout: float,
) -> FanOut[PeerHit]:
    """Ask the peers listed when the subject was converted (``moved`` holds theirs)."""
    if parts.peers is None:
        return FanOut(answers={}, unanswered={})
    return await parts.peers.hit_no_hit(
        purpose=case.activity,
        case_ref=case_ref,
        phase=case.phase.to_proto(),
        subject_for=moved.__getitem__,
        deadline=timeout,
        only=peer_ids,
    )


__all__ = [
    "BEKEND",
    "DEFAULT_DEADLINE_SECONDS",
    "ROUND_METHOD",
    "RoundResult",
    "ask_again",
    "run_round",
]
