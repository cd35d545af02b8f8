"""Compile a bundle into the look-up index the evaluator uses.

The index maps (activity, phase, provider org type, recipient org type or
role) to, per category, the rules that may release it there, in bundle
order. Minimisation plans are built once per (rule, category) and shared by
every decision that uses them.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from policy.model import (
    Bundle,
    FieldType,
    Rule,
    Sensitivity,
    Transform,
    TransformKind,
)

IndexKey = tuple[str, str, str, str]
"""(activity, phase, provider org type, recipient org type or role)."""

_DROP = Transform(TransformKind.DROP)


@dataclass(frozen=True, slots=True)
class FieldStep:
    """What happens to one declared field of a category."""

    name: str
    type: FieldType
    values: frozenset[str]
    transform: Transform


@dataclass(frozen=True)
class Plan:
    """The minimisation of one category under one rule.

    ``steps`` covers every declared field (undeclared fields have no step and
    are dropped); fields the rule does not name get ``drop``.
    """

    category: str
    rule_id: str
    steps: Mapping[str, FieldStep]
    _lookup: dict[str, FieldStep] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_lookup", dict(self.steps))

    @property
    def lookup(self) -> dict[str, FieldStep]:
        """``steps`` as a private plain dict, the fastest mapping to probe per field."""
        return self._lookup

    def describe(self) -> dict[str, str]:
        """Field -> transform, as text, e.g. {"aantal": "band 0/1-2/3-5/6+"}."""
        out = {}
        for name, step in self.steps.items():
            t = step.transform
            if t.kind is TransformKind.BAND:
                labels = [t.band_label(e) for e in t.edges]
                out[name] = "band " + "/".join(labels)
            else:
                out[name] = t.kind.value
        return out


@dataclass(frozen=True)
class CompiledPolicy:
    """A bundle with its decision index."""

    bundle: Bundle
    index: Mapping[IndexKey, Mapping[str, tuple[Rule, ...]]]
    released_phases: Mapping[tuple[str, str, str, str], frozenset[str]]
    """(activity, provider, recipient, category) -> phases in which some rule releases it."""
    plans: Mapping[tuple[str, str], Plan]
    """(rule id, category) -> plan."""
    warnings: tuple[str, ...]
    """Things that are valid but probably not what the author meant."""

    @property
    def sha256(self) -> str:
        """The bundle hash every decision records."""
        return self.bundle.sha256


def compile_bundle(bundle: Bundle) -> CompiledPolicy:
    """Build the index, the minimisation plans and the review warnings of ``bundle``."""
    index: dict[IndexKey, dict[str, list[Rule]]] = {}
    released: dict[tuple[str, str, str, str], set[str]] = {}
    plans: dict[tuple[str, str], Plan] = {}
    warnings: list[str] = []
    for rule in bundle.rules:
        for category in rule.categories:
            plan = plans[(rule.id, category)] = _plan(bundle, rule, category)
            if all(s.transform.kind is TransformKind.DROP for s in plan.steps.values()):
                warnings.append(
                    f"{bundle.source}:{rule.line}: rule {rule.id!r} releases {category!r} "
                    "but keeps none of its fields; name them under minimise"
                )
            sensitivity = bundle.categories[category].sensitivity
            if sensitivity is Sensitivity.ART9 and not rule.grounds:
                warnings.append(
                    f"{bundle.source}:{rule.line}: rule {rule.id!r} releases art9 category "
                    f"{category!r} without grounds; the evaluator still requires a recorded "
                    "consent, legal duty or conflict van plichten"
                )
            for activity, phase, provider, recipient in itertools.product(
                rule.activities, rule.phases, rule.providers, rule.recipients
            ):
                key = (activity, phase, provider, recipient)
                index.setdefault(key, {}).setdefault(category, []).append(rule)
                released.setdefault((activity, provider, recipient, category), set()).add(phase)
    frozen_index = {
        key: MappingProxyType({c: tuple(rules) for c, rules in per_cat.items()})
        for key, per_cat in index.items()
    }
    return CompiledPolicy(
        bundle=bundle,
        index=MappingProxyType(frozen_index),
        released_phases=MappingProxyType({k: frozenset(v) for k, v in released.items()}),
        plans=MappingProxyType(plans),
        warnings=tuple(warnings),
    )


def _plan(bundle: Bundle, rule: Rule, category: str) -> Plan:
    named = rule.minimise.get(category, {})
    steps = {
        name: FieldStep(name, fdef.type, fdef.values, named.get(name, _DROP))
        for name, fdef in bundle.categories[category].fields.items()
    }
    return Plan(category, rule.id, MappingProxyType(steps))
