"""Default-deny policy decisions: ``Evaluator.decide(request) -> Decision``.

The request, result and decision types are :mod:`policy.decision`'s. A
category is released only when a rule for the request's activity, phase,
provider and recipient names it and the rule's conditions hold. Whatever a
rule says, an art. 9 category is released only with a recorded consent,
legal duty or conflict van plichten for that category.

Speed: per (activity, phase, provider, recipient, roles) the evaluator
precomputes, for every category and each of the 16 condition sets (case
accepted x the three grounds), the frozen per-category result, so a decision
is a handful of dictionary look-ups plus assembling the tuple of results.
"""

from __future__ import annotations

from collections.abc import Mapping

from policy.compiler import CompiledPolicy
from policy.decision import (
    ART9_NO_GROUND,
    CASE_NOT_ACCEPTED,
    GROUND_UNMET,
    NO_RULE,
    PHASE_NOT_ALLOWED,
    REASONS,
    UNKNOWN_ACTIVITY,
    UNKNOWN_CATEGORY,
    UNKNOWN_PHASE,
    UNKNOWN_PROVIDER,
    UNKNOWN_RECIPIENT,
    CategoryResult,
    Decision,
    Outcome,
    Request,
    grounds_of,
)
from policy.model import GROUND_BASIS, Condition, Ground, Rule, Sensitivity
from policy.vocabulary import PHASES

# The decision's types and reasons keep their old home here: callers import them from
# this module, the evaluator's public face.
__all__ = [
    "ART9_NO_GROUND",
    "CASE_NOT_ACCEPTED",
    "DECISION_CACHE_SIZE",
    "GROUND_UNMET",
    "NO_RULE",
    "PHASE_NOT_ALLOWED",
    "REASONS",
    "UNKNOWN_ACTIVITY",
    "UNKNOWN_CATEGORY",
    "UNKNOWN_PHASE",
    "UNKNOWN_PROVIDER",
    "UNKNOWN_RECIPIENT",
    "CategoryResult",
    "Decision",
    "Evaluator",
    "Outcome",
    "Request",
    "grounds_of",
]

# Bit layout of a condition set, the index into a category's 16 results.
_ACCEPTED = 1
_GROUND_BITS: Mapping[Ground, int] = {
    Ground.CONSENT: 2,
    Ground.LEGAL_DUTY: 4,
    Ground.CONFLICT_VAN_PLICHTEN: 8,
}
_GROUND_BY_NAME: Mapping[str, int] = {g.value: bit for g, bit in _GROUND_BITS.items()}
_CONDITION_SETS = 16


# Module constants: enum member access through the class costs a few hundred
# nanoseconds on Python 3.11, a noticeable share of an uncached decision.
_ALLOW, _DENY, _PARTIAL = Outcome.ALLOW, Outcome.DENY, Outcome.PARTIAL

_TableKey = tuple[str, str, str, str, frozenset[str]]
_DecisionKey = tuple[tuple[str, ...], bool, frozenset[tuple[str, str]]]

DECISION_CACHE_SIZE = 1024
"""Decisions kept per request key; callers can vary the category list freely,
so the cache is bounded, and when full further decisions are computed fresh."""


class _Table:
    """Precomputed results for one (activity, phase, provider, recipient, roles)."""

    __slots__ = ("decisions", "rows")

    def __init__(self, rows: Mapping[str, tuple[CategoryResult, ...]]) -> None:
        self.rows = rows
        self.decisions: dict[_DecisionKey, Decision] = {}


class Evaluator:
    """Decides requests against one compiled bundle. Thread-safe: tables only grow."""

    def __init__(self, policy: CompiledPolicy) -> None:
        self.policy = policy
        bundle = policy.bundle
        self.bundle_hash = bundle.sha256
        self._activities = frozenset(bundle.activities)
        self._phases = frozenset(bundle.phases)
        self._org_types = frozenset(bundle.org_types)
        self._roles = frozenset(bundle.roles)
        self._tables: dict[_TableKey, _Table] = {}

    def decide(self, request: Request) -> Decision:
        """Decide ``request``: allow, deny or partial, per category with its reason."""
        table = self._tables.get(
            (request.activity, request.phase, request.provider, request.recipient, request.roles)
        )
        if table is None:
            table = self._table_for(request)
        dkey = (request.categories, request.case_accepted, request.grounds)
        decision = table.decisions.get(dkey)
        if decision is not None:
            return decision
        decision = self._assemble(self._results(request, table))
        if len(table.decisions) < DECISION_CACHE_SIZE:
            table.decisions[dkey] = decision
        return decision

    def results(self, request: Request) -> tuple[CategoryResult, ...]:
        """The per-category results of ``request`` without assembling a decision.

        For tools that sweep many requests (``schakel policy diff``): it skips
        the decision cache, which such sweeps would only fill.
        """
        table = self._tables.get(
            (request.activity, request.phase, request.provider, request.recipient, request.roles)
        )
        if table is None:
            table = self._table_for(request)
        return self._results(request, table)

    def _results(self, request: Request, table: _Table) -> tuple[CategoryResult, ...]:
        accepted = _ACCEPTED if request.case_accepted else 0
        grounds = request.grounds
        rows = table.rows
        results = []
        for category in request.categories:
            row = rows.get(category)
            if row is None:
                row = _constant(category, UNKNOWN_CATEGORY)
            bits = accepted
            if grounds:
                for cat, ground in grounds:
                    if cat == category:
                        bits |= _GROUND_BY_NAME[ground]
            results.append(row[bits])
        return tuple(results)

    def _assemble(self, results: tuple[CategoryResult, ...]) -> Decision:
        # Plain loops and list membership: with one to a few categories per
        # request they beat generators and dict.fromkeys several times over.
        released = 0
        rule_ids: list[str] = []
        bases: list[str] = []
        for r in results:
            if r.released:
                released += 1
                if r.rule_id not in rule_ids:
                    rule_ids.append(r.rule_id)
                for basis in r.legal_basis:
                    if basis not in bases:
                        bases.append(basis)
        if not released:
            return Decision(_DENY, results, (), (), self.bundle_hash)
        outcome = _ALLOW if released == len(results) else _PARTIAL
        return Decision(outcome, results, tuple(rule_ids), tuple(bases), self.bundle_hash)

    def _table_for(self, request: Request) -> _Table:
        """Build (and, for values the bundle knows, cache) the results for a request key."""
        reason = self._key_problem(request)
        categories = self.policy.bundle.categories
        if reason:
            table = _Table({c: _constant(c, reason) for c in categories})
        else:
            table = _Table({c: self._row(request, c) for c in categories})
        if self._is_known(request):
            key = (request.activity, request.phase, request.provider, request.recipient)
            self._tables[(*key, request.roles)] = table
        return table

    def _is_known(self, request: Request) -> bool:
        return (
            request.activity in self._activities
            and request.phase in self._phases
            and request.provider in self._org_types
            and request.recipient in self._org_types
            and request.roles <= self._roles
        )

    def _key_problem(self, request: Request) -> str:
        if request.activity not in self._activities:
            return UNKNOWN_ACTIVITY
        if request.phase not in self._phases:
            return UNKNOWN_PHASE
        if request.provider not in self._org_types:
            return UNKNOWN_PROVIDER
        if request.recipient not in self._org_types:
            return UNKNOWN_RECIPIENT
        return ""

    def candidates(self, request: Request, category: str) -> tuple[Rule, ...]:
        """The rules that could release ``category`` for the request's key, in order."""
        recipients = (request.recipient, *sorted(request.roles & self._roles))
        rules: list[Rule] = []
        for recipient in recipients:
            key = (request.activity, request.phase, request.provider, recipient)
            for rule in self.policy.index.get(key, {}).get(category, ()):
                if rule not in rules:
                    rules.append(rule)
        return tuple(rules)

    def _row(self, request: Request, category: str) -> tuple[CategoryResult, ...]:
        """The results for ``category`` under each of the 16 condition sets."""
        rules = self.candidates(request, category)
        if not rules:
            recipients = (request.recipient, *sorted(request.roles & self._roles))
            other_phases = any(
                (request.activity, request.provider, r, category) in self.policy.released_phases
                for r in recipients
            )
            return _constant(category, PHASE_NOT_ALLOWED if other_phases else NO_RULE)
        return tuple(self._evaluate(rules, category, bits) for bits in range(_CONDITION_SETS))

    def _evaluate(self, rules: tuple[Rule, ...], category: str, bits: int) -> CategoryResult:
        art9 = self.policy.bundle.categories[category].sensitivity is Sensitivity.ART9
        recorded = [g for g, bit in _GROUND_BITS.items() if bits & bit]
        first_failure: CategoryResult | None = None
        for rule in rules:
            failure = ""
            ground: Ground | None = None
            if Condition.CASE_ACCEPTED in rule.conditions and not bits & _ACCEPTED:
                failure = CASE_NOT_ACCEPTED
            elif art9 or rule.grounds:
                usable = [g for g in recorded if not rule.grounds or g in rule.grounds]
                if usable:
                    ground = usable[0]
                elif art9 and not recorded:
                    failure = ART9_NO_GROUND
                else:
                    failure = GROUND_UNMET
            if failure:
                first_failure = first_failure or _withheld(category, failure, rule.id)
                continue
            basis: tuple[str, ...] = (rule.legal_basis,)
            if ground is not None and GROUND_BASIS[ground] != rule.legal_basis:
                basis = (rule.legal_basis, GROUND_BASIS[ground])
            return CategoryResult(
                category=category,
                released=True,
                reason="",
                rule_id=rule.id,
                legal_basis=basis,
                ground=ground.value if ground is not None else "",
                plan=self.policy.plans[(rule.id, category)],
                retention_days=rule.retention_days,
            )
        assert first_failure is not None
        return first_failure

    def explain(self, request: Request) -> list[str]:
        """Human-readable lines: per category, the decision and the rules behind it."""
        decision = self.decide(request)
        lines = [
            f"outcome: {decision.outcome.value} (bundle {self.bundle_hash[:16]}...)",
        ]
        for result in decision.results:
            if result.released:
                assert result.plan is not None
                via = f" on ground {result.ground}" if result.ground else ""
                lines.append(
                    f"{result.category}: released by rule {result.rule_id!r}{via}, "
                    f"legal basis {'+'.join(result.legal_basis)}"
                )
                for field, how in result.plan.describe().items():
                    lines.append(f"    {field}: {how}")
                continue
            lines.append(f"{result.category}: withheld ({result.reason})")
            lines.extend(f"    {line}" for line in self._why(request, result))
        return lines

    def _why(self, request: Request, result: CategoryResult) -> list[str]:
        reason = result.reason
        if reason == UNKNOWN_ACTIVITY:
            return [f"activity {request.activity!r} is not in the bundle"]
        if reason == UNKNOWN_PHASE:
            return [f"phase {request.phase!r} is not one of {', '.join(PHASES)}"]
        if reason == UNKNOWN_PROVIDER:
            return [f"provider org type {request.provider!r} is not in the bundle"]
        if reason == UNKNOWN_RECIPIENT:
            return [f"recipient org type {request.recipient!r} is not in the bundle"]
        if reason == UNKNOWN_CATEGORY:
            return [f"category {result.category!r} is not defined in the bundle"]
        if reason == NO_RULE:
            return [
                f"no rule of activity {request.activity!r} releases it from "
                f"{request.provider} to {request.recipient} in any phase"
            ]
        if reason == PHASE_NOT_ALLOWED:
            recipients = (request.recipient, *sorted(request.roles & self._roles))
            phases: set[str] = set()
            for r in recipients:
                key = (request.activity, request.provider, r, result.category)
                phases |= self.policy.released_phases.get(key, frozenset())
            ordered = [p for p in PHASES if p in phases]
            return [f"rules release it only in phase(s): {', '.join(ordered)}"]
        lines = []
        for rule in self.candidates(request, result.category):
            needs = sorted(c.value for c in rule.conditions)
            if rule.grounds:
                needs.append("one of grounds " + "/".join(sorted(g.value for g in rule.grounds)))
            lines.append(
                f"rule {rule.id!r} (line {rule.line}) needs: {', '.join(needs) or 'nothing'}"
            )
        if reason == ART9_NO_GROUND:
            lines.append(
                "art. 9 data crosses only with a recorded consent, legal duty or "
                "conflict van plichten for this category"
            )
        return lines


def _withheld(category: str, reason: str, rule_id: str) -> CategoryResult:
    return CategoryResult(category, False, reason, rule_id, (), "", None, None)


def _constant(category: str, reason: str) -> tuple[CategoryResult, ...]:
    return (_withheld(category, reason, ""),) * _CONDITION_SETS
