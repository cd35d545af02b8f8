"""A peer's case, this node's partners: the checks and judgements behind AskParticipant
and DeliverFacts (the flows are in :mod:`gateway.flows.peer_uitvraag`).

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

from schakel.v1 import common_pb2, federation_pb2

from gateway.cases import Participant
from gateway.config import NodeConfig
from gateway.errors import InvalidInputError, NotFoundError, quote
from gateway.flows import inbound
from policy.evaluator import Decision, Request, grounds_of
from policy.minimise import FactRefusedError, minimise_facts
from policy.store import PolicyStore
from policy.vocabulary import ORG_TYPES, PROCESREGISSEUR, REGIE

GROUND_KINDS = frozenset({"consent", "legal-duty", "conflict-van-plichten"})
MAX_CATEGORIES = 32
DEFAULT_ASK_MS = 5000
MAX_ASK_MS = 60_000


# -- checks ------------------------------------------------------------------


def check_categories(categories: Sequence[str], what: str = "categories") -> tuple[str, ...]:
    """1 to :data:`MAX_CATEGORIES` fact categories, each a code, each once."""
    if not categories or len(categories) > MAX_CATEGORIES:
        raise InvalidInputError(f"{what} must name 1 to {MAX_CATEGORIES} fact categories")
    return inbound.check_codes(categories, what)


def check_partner(
    config: NodeConfig, participant: common_pb2.Participant, field: str
) -> common_pb2.Participant:
    """``participant`` must be a ``[[partners]]`` organisation of this node, of its listed type."""
    if participant.node_id != config.node.id:
        raise InvalidInputError(
            f"{field}.node_id is {quote(participant.node_id)}; this node is {quote(config.node.id)}"
        )
    inbound.check_slug(participant.org_id, f"{field}.org_id")
    listed = {p.id: p.org_type for p in config.partners}
    org_type = listed.get(participant.org_id)
    if org_type is None:
        raise NotFoundError(
            f"{field} {quote(participant.org_id)} is not a partner organisation of node "
            f"{quote(config.node.id)}"
        )
    if org_type != participant.org_type:
        raise InvalidInputError(
            f"{field} {quote(participant.org_id)} is of type {quote(org_type)} here, "
            f"not {quote(participant.org_type)}"
        )
    return participant


def check_recipient_types(types: Sequence[str]) -> tuple[str, ...]:
    """Known organisation types (the regie among them), each once, at least one."""
    if not types:
        raise InvalidInputError("recipient_org_types must name at least one type")
    unknown = [t for t in types if t not in ORG_TYPES]
    if unknown:
        raise InvalidInputError(
            f"recipient_org_types: {quote(unknown[0])} is not an organisation type; "
            f"known: {', '.join(sorted(ORG_TYPES))}"
        )
    if len(set(types)) != len(types):
        raise InvalidInputError("recipient_org_types lists one twice")
    return tuple(types)


def check_provider(participant: common_pb2.Participant) -> common_pb2.Participant:
    """The provider named in a delivery: a known organisation type and ids."""
    if participant.org_type not in ORG_TYPES:
        raise InvalidInputError(
            f"provider.org_type {quote(participant.org_type)} is not a known organisation type"
        )
    if not participant.org_id or not participant.node_id:
        raise InvalidInputError("provider needs org_id and node_id")
    inbound.check_slug(participant.org_id, "provider.org_id")
    inbound.check_slug(participant.node_id, "provider.node_id")
    return participant


def grounds(recorded: Iterable[federation_pb2.FederatedGround]) -> frozenset[tuple[str, str]]:
    """The policy grounds the case node recorded for the provider."""
    by_category: dict[str, list[str]] = {}
    for ground in recorded:
        if ground.kind not in GROUND_KINDS:
            raise InvalidInputError(
                f"grounds: kind {quote(ground.kind)} is not one of "
                f"{', '.join(sorted(GROUND_KINDS))}"
            )
        inbound.check_codes([ground.category], "grounds: category")
        by_category.setdefault(ground.category, []).append(ground.kind)
    return grounds_of(by_category)


def deadline_seconds(deadline_ms: int) -> float:
    """The provider's time to answer; INVALID_ARGUMENT beyond :data:`MAX_ASK_MS`."""
    if deadline_ms > MAX_ASK_MS:
        raise InvalidInputError(f"deadline_ms must be at most {MAX_ASK_MS}")
    return (deadline_ms or DEFAULT_ASK_MS) / 1000


# -- judgements --------------------------------------------------------------


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
    return inbound.decide(
        policy,
        Request(
            activity=activity,
            phase=phase,
            provider=provider,
            recipient=recipient,
            roles=frozenset({PROCESREGISSEUR}) if recipient == REGIE else frozenset(),
            categories=categories,
            case_accepted=True,
            grounds=recorded,
        ),
    )


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


def participant_uri(participant: common_pb2.Participant | Participant) -> str:
    """The audit record's provider: a partner's URI, or a node's for the procesregisseur."""
    if participant.org_type == REGIE:
        return inbound.node_uri(participant.node_id)
    return f"schakel://partner/{participant.node_id}/{participant.org_id}"
