"""The policy bundle as typed, immutable values (policy/README.md describes the format).

A :class:`Bundle` is what :mod:`policy.loader` builds from YAML after full
validation; :mod:`policy.compiler` turns it into the index the evaluator uses.
Nothing here validates: a value of these types is valid by construction of
the loader.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum


class PolicyError(ValueError):
    """Base class of every error the policy package raises."""


class Sensitivity(StrEnum):
    """How special a fact category is under the AVG."""

    REGULAR = "regular"
    ART9 = "art9"
    """Special categories (health): cross only with consent, legal duty or conflict van plichten."""
    ART10 = "art10"
    """Criminal-law data (Wpg, Wjsg)."""


class FieldType(StrEnum):
    """The type of one field of a fact, and the ``FactValue`` kind it carries."""

    CODE = "code"
    NUMBER = "number"
    BOOL = "bool"
    DATE = "date"
    CONTACT = "contact"


class TransformKind(StrEnum):
    """A per-field minimisation applied before a fact leaves."""

    DROP = "drop"
    KEEP = "keep"
    COARSEN_MONTH = "coarsen-month"
    COARSEN_YEAR = "coarsen-year"
    BAND = "band"
    PRESENCE = "presence"
    KEEP_CONTACT = "keep-contact"


TRANSFORM_TYPES: Mapping[TransformKind, frozenset[FieldType]] = {
    TransformKind.DROP: frozenset(FieldType),
    TransformKind.KEEP: frozenset(FieldType) - {FieldType.CONTACT},
    TransformKind.COARSEN_MONTH: frozenset({FieldType.DATE}),
    TransformKind.COARSEN_YEAR: frozenset({FieldType.DATE}),
    TransformKind.BAND: frozenset({FieldType.NUMBER}),
    TransformKind.PRESENCE: frozenset(FieldType),
    TransformKind.KEEP_CONTACT: frozenset({FieldType.CONTACT}),
}
"""Which field types each transform applies to. Contact handles leave only
through ``keep-contact`` so that a reviewer sees every place one crosses."""


class Condition(StrEnum):
    """A case condition a rule can require."""

    CASE_ACCEPTED = "case-accepted"


class Ground(StrEnum):
    """A recorded ground that lets special-category data cross (proto ``GroundKind``)."""

    CONSENT = "consent"
    LEGAL_DUTY = "legal-duty"
    CONFLICT_VAN_PLICHTEN = "conflict-van-plichten"


GROUND_BASIS: Mapping[Ground, str] = {
    Ground.CONSENT: "toestemming",
    Ground.LEGAL_DUTY: "wettelijke-plicht",
    Ground.CONFLICT_VAN_PLICHTEN: "conflict-van-plichten",
}
"""The legal basis code a release on a ground adds to the decision."""


@dataclass(frozen=True)
class FieldDef:
    """One declared field of a fact category."""

    name: str
    type: FieldType
    values: frozenset[str] = frozenset()
    """For a code field: the allowed codes; empty means any code."""


@dataclass(frozen=True)
class Category:
    """A fact category: its fields and how sensitive it is."""

    name: str
    description: str
    sensitivity: Sensitivity
    fields: Mapping[str, FieldDef]


@dataclass(frozen=True)
class Retention:
    """How long after a case closes each kind of data is kept, in days."""

    facts_days: int
    links_days: int
    audit_days: int


@dataclass(frozen=True)
class Activity:
    """A processing activity (purpose) from the register of processing activities."""

    id: str
    uri: str
    purpose: str
    legal_bases: tuple[str, ...]
    retention: Retention
    personal_data: bool
    """False for activities such as national signalling that no rule may serve."""


@dataclass(frozen=True)
class Transform:
    """A minimisation of one field; ``edges`` are the band lower bounds for ``band``."""

    kind: TransformKind
    edges: tuple[int, ...] = ()

    def band_label(self, value: int) -> str:
        """The label of the band ``value`` falls in: "0", "1-2", "3-5", "6+" for edges 0,1,3,6."""
        edges = self.edges
        if value < edges[0]:
            return f"<{edges[0]}"
        for low, nxt in itertools.pairwise(edges):
            if value < nxt:
                high = nxt - 1
                return str(low) if low == high else f"{low}-{high}"
        return f"{edges[-1]}+"


@dataclass(frozen=True)
class Rule:
    """A permission: these categories may cross in this phase from provider to recipient."""

    id: str
    description: str
    activities: tuple[str, ...]
    phases: tuple[str, ...]
    providers: tuple[str, ...]
    """Provider organisation types."""
    recipients: tuple[str, ...]
    """Recipient organisation types or roles."""
    categories: tuple[str, ...]
    legal_basis: str
    conditions: frozenset[Condition]
    """All must hold."""
    grounds: frozenset[Ground]
    """When not empty, one of these must be recorded for the category."""
    minimise: Mapping[str, Mapping[str, Transform]]
    """Category -> field -> transform; a declared field not named here is dropped."""
    retention_days: int | None
    """How long the recipient may keep the released facts; None: the activity's profile."""
    line: int
    """Line of the rule in the bundle file, for explanations."""


@dataclass(frozen=True)
class Bundle:
    """A validated policy bundle."""

    name: str
    version: str
    description: str
    phases: tuple[str, ...]
    org_types: tuple[str, ...]
    roles: tuple[str, ...]
    legal_bases: Mapping[str, str]
    activities: Mapping[str, Activity]
    categories: Mapping[str, Category]
    rules: tuple[Rule, ...]
    outcomes: tuple[str, ...]
    """Outcome codes of afschaling."""
    bottlenecks: tuple[str, ...]
    """Bottleneck tags for signalling, e.g. huisvesting."""
    themes: tuple[str, ...]
    """Case themes of a referral."""
    sha256: str
    """Hex SHA-256 of the exact bytes the bundle was loaded from (the signed bytes)."""
    source: str
    """File name the bundle was loaded from, for messages."""
