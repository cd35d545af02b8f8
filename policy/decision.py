"""What the evaluator answers: the request, the per-category results, the decision, the reasons.

A :class:`Decision` carries its own explanation: per category whether it was
released, under which rule and legal basis, with which minimisation plan, or
why it was withheld (one of :data:`REASONS`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import NamedTuple

from schakel.v1 import common_pb2

from policy.compiler import Plan
from policy.model import Ground, PolicyError

UNKNOWN_ACTIVITY = "unknown-activity"
UNKNOWN_PHASE = "unknown-phase"
UNKNOWN_PROVIDER = "unknown-provider"
UNKNOWN_RECIPIENT = "unknown-recipient"
UNKNOWN_CATEGORY = "unknown-category"
NO_RULE = "no-rule"
"""No rule releases the category from this provider to this recipient in any phase."""
PHASE_NOT_ALLOWED = "phase-not-allowed"
"""Some rule releases it from this provider to this recipient, but not in this phase."""
ART9_NO_GROUND = "art9-no-ground"
CASE_NOT_ACCEPTED = "condition-unmet:case-accepted"
GROUND_UNMET = "condition-unmet:ground"
"""The rule needs a ground (e.g. consent) for the category that is not recorded."""

REASONS = (
    UNKNOWN_ACTIVITY,
    UNKNOWN_PHASE,
    UNKNOWN_PROVIDER,
    UNKNOWN_RECIPIENT,
    UNKNOWN_CATEGORY,
    NO_RULE,
    PHASE_NOT_ALLOWED,
    ART9_NO_GROUND,
    CASE_NOT_ACCEPTED,
    GROUND_UNMET,
)
"""Every reason code a withheld category can carry."""

_GROUND_NAMES = tuple(g.value for g in Ground)


class Outcome(StrEnum):
    """The outcome of a decision."""

    ALLOW = "allow"
    DENY = "deny"
    PARTIAL = "partial"


_OUTCOME_PROTO: Mapping[Outcome, common_pb2.DecisionOutcome.ValueType] = {
    Outcome.ALLOW: common_pb2.DECISION_OUTCOME_ALLOW,
    Outcome.DENY: common_pb2.DECISION_OUTCOME_DENY,
    Outcome.PARTIAL: common_pb2.DECISION_OUTCOME_PARTIAL,
}


@dataclass(frozen=True, slots=True)
class Request:
    """What is asked: which categories cross from a provider to a recipient, and why.

    ``grounds`` holds (category, ground) pairs recorded for the case, e.g.
    ``("zorg.in_zorg", "consent")``; build it with :func:`grounds_of`.
    """

    activity: str
    phase: str
    provider: str
    """Provider organisation type."""
    recipient: str
    """Recipient organisation type."""
    categories: tuple[str, ...]
    roles: frozenset[str] = frozenset()
    """Roles of the recipient (procesregisseur, fg)."""
    case_accepted: bool = False
    grounds: frozenset[tuple[str, str]] = frozenset()

    def __post_init__(self) -> None:
        # Callers may pass lists and sets; the decision tables need hashable values.
        if type(self.categories) is not tuple:
            object.__setattr__(self, "categories", tuple(self.categories))
        if type(self.roles) is not frozenset:
            object.__setattr__(self, "roles", frozenset(self.roles))
        if type(self.grounds) is not frozenset:
            object.__setattr__(self, "grounds", frozenset(self.grounds))
        if not self.categories:
            raise PolicyError("a policy request must name at least one category")
        if len(set(self.categories)) != len(self.categories):
            raise PolicyError("a policy request names a category twice")
        for _category, ground in self.grounds:
            if ground not in _GROUND_NAMES:
                raise PolicyError(f"unknown ground {ground!r}; known: {', '.join(_GROUND_NAMES)}")


def grounds_of(recorded: Mapping[str, Iterable[str]]) -> frozenset[tuple[str, str]]:
    """Request grounds from a mapping category -> recorded grounds."""
    return frozenset((cat, g) for cat, kinds in recorded.items() for g in kinds)


@dataclass(frozen=True, slots=True)
class CategoryResult:
    """The decision on one category."""

    category: str
    released: bool
    reason: str
    """Empty when released, else one of :data:`REASONS`."""
    rule_id: str
    """The rule that released it, or whose condition was unmet; empty otherwise."""
    legal_basis: tuple[str, ...]
    """The basis it crossed on: the rule's, plus the ground's for a release on a ground."""
    ground: str
    """The recorded ground a release relied on, or empty."""
    plan: Plan | None
    retention_days: int | None
    """How long the recipient may keep it (None: the activity's retention profile)."""


class Decision(NamedTuple):
    """The outcome of one request, with its own explanation.

    A named tuple rather than a frozen dataclass: it is built on every
    uncached decision, and tuple construction is several times cheaper.
    """

    outcome: Outcome
    results: tuple[CategoryResult, ...]
    rule_ids: tuple[str, ...]
    """Rules under which categories were released."""
    legal_basis: tuple[str, ...]
    bundle_hash: str

    @property
    def released(self) -> tuple[str, ...]:
        """Categories released, in request order."""
        return tuple(r.category for r in self.results if r.released)

    @property
    def withheld(self) -> tuple[tuple[str, str], ...]:
        """(category, reason) of every category withheld, in request order."""
        return tuple((r.category, r.reason) for r in self.results if not r.released)

    def result(self, category: str) -> CategoryResult | None:
        """The result for ``category``, or None when it was not asked for."""
        for r in self.results:
            if r.category == category:
                return r
        return None

    def to_proto(self) -> common_pb2.DecisionSummary:
        """The summary recorded in the audit log and returned to callers.

        The proto carries one legal basis; several are joined with "," in
        first-use order (e.g. "WGS,toestemming").
        """
        return common_pb2.DecisionSummary(
            outcome=_OUTCOME_PROTO[self.outcome],
            released=self.released,
            withheld=[
                common_pb2.WithheldCategory(category=c, reason=reason)
                for c, reason in self.withheld
            ],
            bundle_hash=self.bundle_hash,
            rule_ids=self.rule_ids,
            legal_basis=common_pb2.LegalBasis(code=",".join(self.legal_basis)),
        )
