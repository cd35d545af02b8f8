"""Load a policy bundle from YAML, validating schema and every reference.

Each problem names the file, line and column and says what is wrong; all
problems of a file are reported together (see :class:`PolicyLoadError`).
The bundle's hash is the SHA-256 of the exact bytes read, which are also the
bytes the policy key signs (:mod:`policy.signing`). This module reads the
declarations (phases, organisation types, roles, legal bases, lists,
categories, activities); :mod:`policy.ruleread` reads the rules against them.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from types import MappingProxyType

from yaml.nodes import MappingNode, Node

from policy.model import (
    Activity,
    Bundle,
    Category,
    FieldDef,
    FieldType,
    Retention,
    Rule,
    Sensitivity,
)
from policy.ruleread import Declared, RuleReader
from policy.vocabulary import OFFICER_ROLES, ORG_TYPES, PHASES
from policy.yamlread import PolicyLoadError, Problem, Reader

SCHEMA = "schakel.policy/v1"
"""The value of the bundle's ``schema`` key this loader understands."""

_TOP_REQUIRED = (
    "schema",
    "name",
    "version",
    "phases",
    "org_types",
    "legal_bases",
    "activities",
    "categories",
    "rules",
)
_TOP_OPTIONAL = ("description", "roles", "lists")
_LISTS = ("outcomes", "bottlenecks", "themes")

__all__ = ["SCHEMA", "PolicyLoadError", "load_bundle", "load_bundle_bytes"]


def load_bundle(path: str | Path) -> Bundle:
    """Read and validate the bundle at ``path``; raises :class:`PolicyLoadError`."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        why = exc.strerror or type(exc).__name__
        problem = Problem(str(path), 1, 1, f"cannot read the bundle: {why}")
        raise PolicyLoadError([problem]) from exc
    return load_bundle_bytes(data, str(path))


def load_bundle_bytes(data: bytes, source: str) -> Bundle:
    """Validate a bundle given as the bytes of its YAML file; ``source`` names it in errors."""
    reader = Reader(source)
    root = reader.compose(data)
    bundle = _Builder(reader, data).build(root) if root is not None else None
    reader.check()
    # build() returns None only after recording a problem, so check() raised.
    assert bundle is not None
    return bundle


class _Builder:
    def __init__(self, reader: Reader, data: bytes) -> None:
        self.r = reader
        self.data = data
        self.phases: tuple[str, ...] = ()
        self.org_types: tuple[str, ...] = ()
        self.roles: tuple[str, ...] = ()
        self.legal_bases: dict[str, str] = {}
        self.lists: dict[str, tuple[str, ...]] = {name: () for name in _LISTS}
        self.activities: dict[str, Activity] = {}
        self.categories: dict[str, Category] = {}

    def build(self, root: Node) -> Bundle | None:
        r = self.r
        top = r.mapping(root, "the bundle", _TOP_REQUIRED, _TOP_OPTIONAL, extensions=True)
        if top is None:
            return None
        if "schema" in top:
            schema = r.string(top["schema"], "schema")
            if schema is not None and schema != SCHEMA:
                r.fail(top["schema"], f"schema {schema!r} is not supported; expected {SCHEMA!r}")
        name = r.string(top["name"], "name") if "name" in top else None
        version = r.string(top["version"], "version") if "version" in top else None
        description = ""
        if "description" in top:
            description = r.string(top["description"], "description") or ""
        if "phases" in top:
            self.phases = self._names(top["phases"], "phases", PHASES, "phase")
        if "org_types" in top:
            self.org_types = self._names(top["org_types"], "org_types", ORG_TYPES, "org type")
        if "roles" in top:
            self.roles = self._names(top["roles"], "roles", OFFICER_ROLES, "role")
        if "legal_bases" in top:
            self._legal_bases(top["legal_bases"])
        if "lists" in top:
            self._lists(top["lists"])
        if "categories" in top:
            self._categories(top["categories"])
        if "activities" in top:
            self._activities(top["activities"])
        rules: tuple[Rule, ...] = ()
        if "rules" in top:
            declared = Declared(
                self.phases, self.org_types, self.roles, self.activities, self.categories
            )
            rules = RuleReader(r, declared).rules(top["rules"])
        if name is None or version is None:
            return None
        return Bundle(
            name=name,
            version=version,
            description=description,
            phases=self.phases,
            org_types=self.org_types,
            roles=self.roles,
            legal_bases=MappingProxyType(self.legal_bases),
            activities=MappingProxyType(self.activities),
            categories=MappingProxyType(self.categories),
            rules=rules,
            outcomes=self.lists["outcomes"],
            bottlenecks=self.lists["bottlenecks"],
            themes=self.lists["themes"],
            sha256=hashlib.sha256(self.data).hexdigest(),
            source=self.r.source,
        )

    def _names(
        self, node: Node, what: str, known: tuple[str, ...] | frozenset[str], kind: str
    ) -> tuple[str, ...]:
        out = []
        for value, item in self.r.strings(node, what, scalar_ok=False):
            if value not in known:
                self.r.fail(item, f"unknown {kind} {value!r}; known: {', '.join(sorted(known))}")
            else:
                out.append(value)
        return tuple(out)

    def _legal_bases(self, node: Node) -> None:
        for code, _key, value in self.r.keyed(node, "legal_bases") or []:
            text = self.r.string(value, f"the description of legal basis {code!r}")
            if text is not None:
                self.legal_bases[code] = text

    def _lists(self, node: Node) -> None:
        lists = self.r.mapping(node, "lists", (), _LISTS) or {}
        for name, value in lists.items():
            self.lists[name] = tuple(v for v, _ in self.r.strings(value, f"lists.{name}"))

    def _categories(self, node: Node) -> None:
        r = self.r
        for name, _key, value in r.keyed(node, "categories") or []:
            what = f"category {name!r}"
            spec = r.mapping(value, what, ("sensitivity", "fields"), ("description",))
            if spec is None or "sensitivity" not in spec or "fields" not in spec:
                continue
            sens = r.string(spec["sensitivity"], f"the sensitivity of {what}")
            if sens is not None and sens not in Sensitivity.__members__.values():
                r.fail(
                    spec["sensitivity"],
                    f"sensitivity {sens!r} of {what} is unknown; "
                    f"known: {', '.join(s.value for s in Sensitivity)}",
                )
                sens = None
            description = ""
            if "description" in spec:
                description = r.string(spec["description"], f"the description of {what}") or ""
            fields = self._fields(spec["fields"], what)
            if sens is not None and fields is not None:
                self.categories[name] = Category(
                    name, description, Sensitivity(sens), MappingProxyType(fields)
                )

    def _fields(self, node: Node, what: str) -> dict[str, FieldDef] | None:
        r = self.r
        entries = r.keyed(node, f"the fields of {what}")
        if entries is None:
            return None
        if not entries:
            r.fail(node, f"{what} declares no fields")
            return None
        fields: dict[str, FieldDef] = {}
        for fname, _key, value in entries:
            fwhat = f"field {fname!r} of {what}"
            values: frozenset[str] = frozenset()
            type_node = value
            if isinstance(value, MappingNode):
                spec = r.mapping(value, fwhat, ("type",), ("values", "values_from"))
                if spec is None or "type" not in spec:
                    continue
                type_node = spec["type"]
                if "values" in spec and "values_from" in spec:
                    r.fail(value, f"{fwhat} has both 'values' and 'values_from'; use one")
                    continue
                if "values" in spec:
                    values = frozenset(v for v, _ in r.strings(spec["values"], f"{fwhat} values"))
                elif "values_from" in spec:
                    source = r.string(spec["values_from"], f"values_from of {fwhat}")
                    if source not in _LISTS:
                        r.fail(
                            spec["values_from"],
                            f"values_from of {fwhat} must name one of the lists "
                            f"{', '.join(_LISTS)}",
                        )
                        continue
                    values = frozenset(self.lists[source])
                    if not values:
                        r.fail(spec["values_from"], f"lists.{source} is empty or missing")
                        continue
            ftype = r.string(type_node, f"the type of {fwhat}")
            if ftype is None:
                continue
            if ftype not in FieldType.__members__.values():
                r.fail(
                    type_node,
                    f"type {ftype!r} of {fwhat} is unknown; "
                    f"known: {', '.join(t.value for t in FieldType)}",
                )
                continue
            if values and ftype != FieldType.CODE:
                r.fail(value, f"{fwhat} has allowed values but is not of type 'code'")
                continue
            fields[fname] = FieldDef(fname, FieldType(ftype), values)
        return fields

    def _activities(self, node: Node) -> None:
        r = self.r
        for aid, _key, value in r.keyed(node, "activities") or []:
            what = f"activity {aid!r}"
            spec = r.mapping(
                value,
                what,
                ("uri", "purpose", "legal_bases", "retention"),
                ("personal_data",),
            )
            if spec is None or len(spec.keys() & {"uri", "purpose", "legal_bases"}) < 3:
                continue
            uri = r.string(spec["uri"], f"the uri of {what}")
            if uri is not None and ":" not in uri:
                r.fail(spec["uri"], f"the uri of {what} must be an absolute URI")
                uri = None
            purpose = r.string(spec["purpose"], f"the purpose of {what}")
            bases = []
            for code, item in r.strings(spec["legal_bases"], f"the legal_bases of {what}"):
                if code not in self.legal_bases:
                    r.fail(item, f"legal basis {code!r} of {what} is not in legal_bases")
                else:
                    bases.append(code)
            retention = self._retention(spec["retention"], what) if "retention" in spec else None
            personal = True
            if "personal_data" in spec:
                flag = r.boolean(spec["personal_data"], f"personal_data of {what}")
                personal = True if flag is None else flag
            if uri is None or purpose is None or retention is None:
                continue
            self.activities[aid] = Activity(aid, uri, purpose, tuple(bases), retention, personal)

    def _retention(self, node: Node, what: str) -> Retention | None:
        keys = ("facts_days", "links_days", "audit_days")
        spec = self.r.mapping(node, f"the retention of {what}", keys, ())
        if spec is None:
            return None
        days = [
            self.r.integer(spec[k], f"retention {k} of {what}", minimum=0) if k in spec else None
            for k in keys
        ]
        if any(d is None for d in days):
            return None
        facts, links, audit = (int(d or 0) for d in days)
        return Retention(facts, links, audit)
