"""Read the ``rules`` section of a policy bundle: references, conditions, minimisation, retention.

Every name a rule uses must be declared in the bundle's other sections
(:class:`Declared`); each problem is recorded on the shared
:class:`policy.yamlread.Reader` with its line and column, so all problems of
a file are reported together.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from yaml.nodes import Node, ScalarNode

from policy.model import (
    TRANSFORM_TYPES,
    Activity,
    Category,
    Condition,
    Ground,
    Rule,
    Transform,
    TransformKind,
)
from policy.yamlread import Reader

_RULE_REQUIRED = (
    "id",
    "activity",
    "phases",
    "providers",
    "recipients",
    "categories",
    "legal_basis",
)
_RULE_OPTIONAL = ("description", "conditions", "grounds", "minimise", "retention_days")


@dataclass(frozen=True)
class Declared:
    """What the bundle's other sections declared, which rules refer to by name."""

    phases: tuple[str, ...]
    org_types: tuple[str, ...]
    roles: tuple[str, ...]
    activities: Mapping[str, Activity]
    categories: Mapping[str, Category]


class RuleReader:
    """Reads rules against the names a bundle declared."""

    def __init__(self, reader: Reader, declared: Declared) -> None:
        """Record problems on ``reader``; resolve names in ``declared``."""
        self.r = reader
        self.declared = declared

    def rules(self, node: Node) -> tuple[Rule, ...]:
        """The valid rules of the ``rules`` section, in order; problems go to the reader."""
        rules: list[Rule] = []
        ids: set[str] = set()
        for item in self.r.sequence(node, "rules") or []:
            rule = self._rule(item, ids)
            if rule is not None:
                rules.append(rule)
        return tuple(rules)

    def _rule(self, node: Node, ids: set[str]) -> Rule | None:
        r = self.r
        spec = r.mapping(node, "a rule", _RULE_REQUIRED, _RULE_OPTIONAL)
        if spec is None or any(k not in spec for k in _RULE_REQUIRED):
            return None
        rid = r.string(spec["id"], "the rule id")
        if rid is None:
            return None
        if rid in ids:
            r.fail(spec["id"], f"rule id {rid!r} is used twice")
            return None
        ids.add(rid)
        what = f"rule {rid!r}"
        activities = self._refs(
            spec["activity"], f"the activity of {what}", tuple(self.declared.activities), "activity"
        )
        acts = [self.declared.activities[a] for a in activities]
        ok = bool(activities)
        for act in acts:
            if not act.personal_data:
                r.fail(
                    spec["activity"],
                    f"{what} serves activity {act.id!r}, which is declared personal_data: false",
                )
                ok = False
        phases = self._refs(spec["phases"], f"the phases of {what}", self.declared.phases, "phase")
        providers = self._refs(
            spec["providers"], f"the providers of {what}", self.declared.org_types, "org type"
        )
        recipients = self._refs(
            spec["recipients"],
            f"the recipients of {what}",
            (*self.declared.org_types, *self.declared.roles),
            "org type or role",
        )
        categories = self._refs(
            spec["categories"],
            f"the categories of {what}",
            tuple(self.declared.categories),
            "category",
        )
        basis = r.string(spec["legal_basis"], f"the legal_basis of {what}")
        for act in acts:
            if basis is not None and basis not in act.legal_bases:
                r.fail(
                    spec["legal_basis"],
                    f"legal basis {basis!r} of {what} is not one of activity {act.id!r}'s: "
                    f"{', '.join(act.legal_bases)}",
                )
                ok = False
        conditions = frozenset(
            Condition(c)
            for c in self._enum(spec.get("conditions"), f"the conditions of {what}", Condition)
        )
        grounds = frozenset(
            Ground(g) for g in self._enum(spec.get("grounds"), f"the grounds of {what}", Ground)
        )
        minimise = self._minimise(spec.get("minimise"), what, categories)
        retention: int | None = None
        if "retention_days" in spec:
            retention = r.integer(spec["retention_days"], f"retention_days of {what}", minimum=0)
            for act in acts:
                if retention is not None and retention > act.retention.facts_days:
                    r.fail(
                        spec["retention_days"],
                        f"retention_days of {what} exceeds activity {act.id!r}'s facts_days "
                        f"({act.retention.facts_days})",
                    )
                    ok = False
        description = ""
        if "description" in spec:
            description = r.string(spec["description"], f"the description of {what}") or ""
        if not (ok and phases and providers and recipients and categories and basis):
            return None
        if minimise is None:
            return None
        return Rule(
            id=rid,
            description=description,
            activities=activities,
            phases=phases,
            providers=providers,
            recipients=recipients,
            categories=categories,
            legal_basis=basis,
            conditions=conditions,
            grounds=grounds,
            minimise=MappingProxyType(minimise),
            retention_days=retention,
            line=node.start_mark.line + 1,
        )

    def _refs(self, node: Node, what: str, known: tuple[str, ...], kind: str) -> tuple[str, ...]:
        """Names that must be declared elsewhere in the bundle; empty on any problem."""
        values = self.r.strings(node, what)
        bad = False
        for value, item in values:
            if value not in known:
                self.r.fail(item, f"{what}: {kind} {value!r} is not declared in the bundle")
                bad = True
        if not values and not bad:
            self.r.fail(node, f"{what} must name at least one {kind}")
        return () if bad else tuple(v for v, _ in values)

    def _enum(
        self, node: Node | None, what: str, enum: type[Condition] | type[Ground]
    ) -> list[str]:
        if node is None:
            return []
        known = [e.value for e in enum]
        out = []
        for value, item in self.r.strings(node, what):
            if value not in known:
                self.r.fail(item, f"{what}: {value!r} is unknown; known: {', '.join(known)}")
            else:
                out.append(value)
        return out

    def _minimise(
        self, node: Node | None, what: str, categories: tuple[str, ...]
    ) -> dict[str, MappingProxyType[str, Transform]] | None:
        r = self.r
        out: dict[str, MappingProxyType[str, Transform]] = {}
        if node is None or not categories:
            return out
        entries = r.keyed(node, f"the minimise section of {what}")
        if entries is None:
            return None
        for cname, key, value in entries:
            if cname not in categories:
                r.fail(
                    key, f"the minimise section of {what} names {cname!r}, not in its categories"
                )
                continue
            category = self.declared.categories[cname]
            per_field: dict[str, Transform] = {}
            for fname, fkey, tnode in r.keyed(value, f"minimise.{cname} of {what}") or []:
                fdef = category.fields.get(fname)
                if fdef is None:
                    r.fail(fkey, f"{what}: category {cname!r} has no field {fname!r}")
                    continue
                transform = self._transform(tnode, f"{what} {cname}.{fname}")
                if transform is None:
                    continue
                if fdef.type not in TRANSFORM_TYPES[transform.kind]:
                    allowed = ", ".join(sorted(t.value for t in TRANSFORM_TYPES[transform.kind]))
                    r.fail(
                        tnode,
                        f"{what}: transform {transform.kind.value!r} does not apply to "
                        f"{cname}.{fname} of type {fdef.type.value!r} (applies to: {allowed})",
                    )
                    continue
                per_field[fname] = transform
            out[cname] = MappingProxyType(per_field)
        return out

    def _transform(self, node: Node, what: str) -> Transform | None:
        r = self.r
        if isinstance(node, ScalarNode):
            kind = r.string(node, f"the transform of {what}")
            if kind is None:
                return None
            if kind == TransformKind.BAND:
                r.fail(node, f"{what}: 'band' needs its edges, e.g. {{band: [0, 1, 3, 6]}}")
                return None
            if kind not in TransformKind.__members__.values():
                known = ", ".join(k.value for k in TransformKind)
                r.fail(node, f"{what}: transform {kind!r} is unknown; known: {known}")
                return None
            return Transform(TransformKind(kind))
        spec = r.mapping(node, f"the transform of {what}", ("band",), ())
        if spec is None or "band" not in spec:
            return None
        items = r.sequence(spec["band"], f"the band edges of {what}") or []
        edges = [r.integer(i, f"a band edge of {what}") for i in items]
        if not items or any(e is None for e in edges):
            if not items:
                r.fail(spec["band"], f"{what}: band needs at least one edge")
            return None
        clean = tuple(int(e or 0) for e in edges)
        if any(b <= a for a, b in itertools.pairwise(clean)):
            r.fail(spec["band"], f"{what}: band edges must be strictly increasing")
            return None
        return Transform(TransformKind.BAND, clean)
