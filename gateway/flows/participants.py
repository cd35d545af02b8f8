"""A peer's case, this node's partners: the checks and judgements behind AskParticipant
and DeliverFacts.

A case lives at one node, but its participants may be partner organisations
of other nodes. The case node cannot reach those partners itself, so it asks
their node: ``AskParticipant`` to put an uitvraag to a provider, and
``DeliverFacts`` to hand a recipient what was released to it.

Two rules hold on every path. The provider's node minimises, once, under
its own policy for the recipient's organisation type, because minimisation
is not idempotent (a banded count cannot be banded again). And every node a
fact passes decides by category under its own policy, so a fact crosses
only when the case node and the partner's node both allow it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import grpc
from schakel.v1 import common_pb2, federation_pb2

from gateway.cases import Participant
from gateway.config import NodeConfig
from policy.evaluator import Decision, Request, grounds_of
from policy.minimise import FactRefusedError, minimise_facts
from policy.model import PolicyError
from policy.store import PolicyStore
from policy.vocabulary import ORG_TYPES

ZVH = "zvh"
"""The organisation type of a ZVH's procesregisseur as a recipient."""
GROUND_KINDS = frozenset({"consent", "legal-duty", "conflict-van-plichten"})
MAX_CATEGORIES = 32
DEFAULT_ASK_MS = 5000
MAX_ASK_MS = 60_000


class RefusedError(Exception):
    """A request this node refuses: the status and a message naming what was wrong."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code


def check_categories(categories: Sequence[str]) -> None:
    """1 to :data:`MAX_CATEGORIES` categories, each once."""
    if not categories or len(categories) > MAX_CATEGORIES:
        raise RefusedError(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"categories must name 1 to {MAX_CATEGORIES} fact categories",
        )
    if len(set(categories)) != len(categories):
        raise RefusedError(grpc.StatusCode.INVALID_ARGUMENT, "categories lists one twice")


def check_partner(
    config: NodeConfig, participant: common_pb2.Participant, field: str
) -> common_pb2.Participant:
    """``participant`` must be a ``[[partners]]`` organisation of this node, of its listed type."""
    if participant.node_id != config.node.id:
        raise RefusedError(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"{field}.node_id is {participant.node_id!r}; this node is {config.node.id!r}",
        )
    listed = {p.id: p.org_type for p in config.partners}
    org_type = listed.get(participant.org_id)
    if org_type is None:
        raise RefusedError(
            grpc.StatusCode.NOT_FOUND,
            f"{field} {participant.org_id!r} is not a partner organisation of node "
            f"{config.node.id!r}",
        )
    if org_type != participant.org_type:
        raise RefusedError(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"{field} {participant.org_id!r} is of type {org_type!r} here, "
            f"not {participant.org_type!r}",
        )
    return participant


def check_recipient_types(types: Sequence[str]) -> None:
    """Known organisation types (or ``zvh``), each once, at least one."""
    if not types:
        raise RefusedError(
            grpc.StatusCode.INVALID_ARGUMENT, "recipient_org_types must name at least one type"
        )
    unknown = sorted(set(types) - ORG_TYPES - {ZVH})
    if unknown:
        raise RefusedError(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"recipient_org_types: unknown {', '.join(unknown)}; "
            f"known: {', '.join(sorted(ORG_TYPES | {ZVH}))}",
        )
    if len(set(types)) != len(types):
        raise RefusedError(grpc.StatusCode.INVALID_ARGUMENT, "recipient_org_types lists one twice")


def grounds(recorded: Iterable[federation_pb2.FederatedGround]) -> frozenset[tuple[str, str]]:
    """The policy grounds the case node recorded for the provider."""
    by_category: dict[str, list[str]] = {}
    for ground in recorded:
        if ground.kind not in GROUND_KINDS:
            raise RefusedError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"grounds: kind {ground.kind!r} is not one of {', '.join(sorted(GROUND_KINDS))}",
            )
        by_category.setdefault(ground.category, []).append(ground.kind)
    return grounds_of(by_category)


def to_federated(recorded: Iterable[tuple[str, str]]) -> list[federation_pb2.FederatedGround]:
    """(category, kind) pairs as sent to the partner's node."""
    return [federation_pb2.FederatedGround(category=c, kind=k) for c, k in sorted(recorded)]


def decide(
    policy: PolicyStore,
    *,
    activity: str,
    phase: str,
    provider: str,
    recipient: str,
    categories: tuple[str, ...],
    recorded: frozenset[tuple[str, str]],
) -> Decision:
    """This node's decision; the case node asks only once a case is accepted (casusoverleg
    and later), so the case counts as accepted."""
    try:
        return policy.decide(
            Request(
                activity=activity,
                phase=phase,
                provider=provider,
                recipient=recipient,
                roles=frozenset({"procesregisseur"}) if recipient == ZVH else frozenset(),
                categories=categories,
                case_accepted=True,
                grounds=recorded,
            )
        )
    except PolicyError as exc:
        raise RefusedError(grpc.StatusCode.INVALID_ARGUMENT, str(exc)) from exc


@dataclass(frozen=True)
class Released:
    """The facts one decision lets out, minimised, and the categories refused as malformed."""

    facts: list[common_pb2.Fact]
    malformed: tuple[str, ...]


def release(facts: Iterable[common_pb2.Fact], decision: Decision) -> Released:
    """Minimise per fact; a fact that does not fit its plan stays behind, whole."""
    allowed = set(decision.released)
    out: list[common_pb2.Fact] = []
    malformed: list[str] = []
    for fact in facts:
        if fact.category not in allowed:
            continue
        try:
            out.extend(minimise_facts([fact], decision))
        except FactRefusedError:
            malformed.append(fact.category)
    return Released(out, tuple(malformed))


def deadline_seconds(deadline_ms: int) -> float:
    """The provider's time to answer; INVALID_ARGUMENT beyond :data:`MAX_ASK_MS`."""
    if deadline_ms > MAX_ASK_MS:
        raise RefusedError(
            grpc.StatusCode.INVALID_ARGUMENT, f"deadline_ms must be at most {MAX_ASK_MS}"
        )
    return (deadline_ms or DEFAULT_ASK_MS) / 1000


def participant_uri(participant: common_pb2.Participant | Participant) -> str:
    """The audit record's provider: a partner's URI, or a node's for the procesregisseur."""
    if participant.org_type == ZVH:
        return f"schakel://node/{participant.node_id}"
    return f"schakel://partner/{participant.node_id}/{participant.org_id}"


def check_provider(participant: common_pb2.Participant) -> None:
    """The provider named in a delivery: a known organisation type and ids."""
    if participant.org_type not in ORG_TYPES | {ZVH}:
        raise RefusedError(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"provider.org_type {participant.org_type!r} is not a known organisation type",
        )
    if not participant.org_id or not participant.node_id:
        raise RefusedError(grpc.StatusCode.INVALID_ARGUMENT, "provider needs org_id and node_id")
