"""What every case-flow call from a peer node shares: its crossing, its subject, its checks.

A peer asks about a person in one of its own cases (HitNoHit, LinkCase,
RequestFacts, AskParticipant, DeliverFacts, TransferCase). Each of those
flows

1. opens its crossing with what this node vouches for itself (the method,
   the verified caller, this node as provider);
2. decrypts the subject, so that from here on any refusal is recorded with
   it and shows in that person's inzage;
3. only then checks the rest of the request. A request value joins the
   crossing once it has passed its check, so the refusal record of a
   malformed request can always be written: such a request is answered
   INVALID_ARGUMENT, never UNAVAILABLE.

A value passes a check only when the audit log can hold it, which is why ids
and codes that look like a BSN are refused here rather than at the write.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import TYPE_CHECKING

from schakel.v1 import common_pb2

from certs.identity import Identity
from gateway.audit.records import is_bsn_shaped
from gateway.cases.model import check_code, check_id
from gateway.errors import DeniedError, InvalidInputError, NotConfiguredError, quote
from gateway.federation.directory import NODE_URI_PREFIX
from gateway.flows.crossing import Crossing
from policy.evaluator import Decision, Request
from policy.model import PolicyError
from policy.pseudonyms import PseudonymError

if TYPE_CHECKING:
    from gateway.parts import NodeParts
    from policy.store import PolicyStore

SERVICE = "schakel.v1.FederationService"

_ACTIVITY = re.compile(r"^[a-z][a-z0-9._-]{0,127}$")
_CASE_ID = re.compile(r"^[0-9a-f]{32}$")


def activity_uri(policy: PolicyStore | None, activity_id: str) -> str:
    """The register URI of an activity from the policy in force ("" without one)."""
    if policy is None:
        return ""
    activity = policy.evaluator.policy.bundle.activities.get(activity_id)
    return activity.uri if activity is not None else ""


def node_uri(node_id: str) -> str:
    """The URI of a node, as audit records name it."""
    return NODE_URI_PREFIX + node_id


def open_crossing(
    parts: NodeParts,
    caller: Identity,
    method: str,
    phase: int,
    categories: tuple[str, ...] = (),
) -> Crossing:
    """The crossing of a peer's call, before anything in the request is checked.

    ``categories`` are the node's own (a constant of the method), never the
    request's: those join once checked.
    """
    return Crossing(
        name=f"{SERVICE}/{method}",
        caller=caller,
        phase=phase,
        categories=categories,
        provider=node_uri(parts.node_id),
    )


def open_subject(
    parts: NodeParts, crossing: Crossing, subject: common_pb2.EncryptedPseudonym
) -> str:
    """The subject's node-domain pseudonym, set on the crossing.

    The sender had it converted to this node's domain, so the node decrypts
    it with its own domain key; a ciphertext under any other key is refused.
    """
    subjects = parts.subjects
    if subjects is None:
        raise NotConfiguredError("this node has no pseudonym keys configured")
    try:
        pseudonym = subjects.open_own(subjects.parse(subject))
    except PseudonymError as exc:
        raise InvalidInputError(
            f"subject must be encrypted for this node's domain {quote(parts.node_id)}: {exc}"
        ) from None
    crossing.subject = pseudonym
    return pseudonym


def check_caller(
    parts: NodeParts,
    crossing: Crossing,
    purpose: common_pb2.Purpose,
    case_ref: common_pb2.CaseRef,
) -> str:
    """Who asks about which case, and why; returns the activity, set on the crossing.

    The caller must be in the federation directory (when the node has one),
    the purpose must be a processing activity id, and ``case_ref`` must name
    a case of the calling node.
    """
    caller = crossing.caller
    peers = parts.peers
    if peers is not None and caller.node_id not in {p.node_id for p in peers.peers()}:
        raise DeniedError(
            f"node {quote(caller.node_id)} is not in this node's federation directory"
        )
    activity = check_activity(purpose.processing_activity_id)
    crossing.activity = activity
    crossing.activity_uri = activity_uri(parts.policy, activity)
    if case_ref.node_id != caller.node_id or not _CASE_ID.match(case_ref.case_id):
        raise InvalidInputError(
            "case_ref must name a case of the calling node (node_id and case_id, "
            "32 lowercase hex characters)"
        )
    crossing.case_ref = case_ref
    return activity


def check_activity(activity: str) -> str:
    """A processing activity id, such as ``zvh.complexe-casuistiek``."""
    if not activity:
        raise InvalidInputError("purpose.processing_activity_id is required")
    if not _ACTIVITY.match(activity) or is_bsn_shaped(activity):
        raise InvalidInputError(
            "purpose.processing_activity_id must be an activity id of at most 128 lowercase "
            f"letters, digits, '.', '_' or '-', such as 'zvh.complexe-casuistiek', not "
            f"{_quoted(activity)}"
        )
    return activity


def check_codes(values: Iterable[str], what: str) -> tuple[str, ...]:
    """Machine codes (categories, tags), each once; returned as a tuple in request order."""
    codes = tuple(values)
    for value in codes:
        check_code(value, f"each of {what}")
        if is_bsn_shaped(value):
            raise InvalidInputError(f"{what}: a code looks like a BSN; codes name, never identify")
    if len(set(codes)) != len(codes):
        raise InvalidInputError(f"{what} lists a code more than once")
    return codes


def check_slug(value: str, what: str) -> str:
    """A node or organisation id: 1-63 lowercase letters, digits or '-'."""
    check_id(value, what)
    if is_bsn_shaped(value):
        raise InvalidInputError(f"{what} looks like a BSN; it must be an organisation or node id")
    return value


def require_policy(parts: NodeParts) -> PolicyStore:
    """The policy in force; without one nothing may cross."""
    if parts.policy is None:
        raise NotConfiguredError("this node has no policy bundle, so nothing may cross")
    return parts.policy


def decide(policy: PolicyStore, request: Request) -> Decision:
    """The policy decision; a request policy cannot judge is malformed."""
    try:
        return policy.decide(request)
    except PolicyError as exc:
        raise InvalidInputError(str(exc)) from None


def _quoted(value: str) -> str:
    # A value that looks like a BSN is never repeated, not even cut short.
    return "a value that looks like a BSN" if is_bsn_shaped(value) else quote(value)
