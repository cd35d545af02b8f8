"""Table-driven policy cases: a request and the decision a bundle must give.

A cases file (``cases.yaml`` next to a bundle) holds a list under ``cases``::

    - name: triage reveals only bekend
      request:
        activity: zvh.complexe-casuistiek
        phase: triage
        provider: politie
        recipient: zvh
        roles: [procesregisseur]          # optional
        categories: [bekend, justitie.antecedenten]
        case_accepted: false              # optional
        grounds: {zorg.in_zorg: [consent]}  # optional
      expect:
        outcome: partial
        released: [bekend]                # optional: exactly these
        withheld: {justitie.antecedenten: phase-not-allowed}  # optional: exactly these
        rules: [hit-no-hit]               # optional: exactly these rule ids
        legal_basis: [WGS]                # optional
        minimise: {bekend: {bekend: keep, contact: keep-contact}}  # optional, per category

``schakel policy test`` runs them; tests/policy runs the baseline's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from yaml.nodes import Node

from policy.evaluator import REASONS, Decision, Evaluator, Outcome, Request
from policy.model import Ground, PolicyError
from policy.yamlread import PolicyLoadError, Problem, Reader

CASES_FILE = "cases.yaml"

_REQUEST_REQUIRED = ("activity", "phase", "provider", "recipient", "categories")
_REQUEST_OPTIONAL = ("roles", "case_accepted", "grounds")
_EXPECT_OPTIONAL = ("released", "withheld", "rules", "legal_basis", "minimise")


@dataclass(frozen=True)
class Expectation:
    """What a case expects; None means "not checked"."""

    outcome: Outcome
    released: frozenset[str] | None = None
    withheld: dict[str, str] | None = None
    rules: tuple[str, ...] | None = None
    legal_basis: tuple[str, ...] | None = None
    minimise: dict[str, dict[str, str]] | None = None


@dataclass(frozen=True)
class Case:
    """One table row."""

    name: str
    line: int
    request: Request
    expect: Expectation


@dataclass(frozen=True)
class CaseResult:
    """The outcome of running one case."""

    case: Case
    mismatches: tuple[str, ...] = field(default=())

    @property
    def passed(self) -> bool:
        """True when the decision matched every expectation."""
        return not self.mismatches


def load_cases(path: str | Path) -> list[Case]:
    """Read and validate a cases file; raises :class:`~policy.yamlread.PolicyLoadError`."""
    path = Path(path)
    reader = Reader(str(path))
    try:
        data = path.read_bytes()
    except OSError as exc:
        problem = Problem(str(path), 1, 1, f"cannot read the cases file ({exc.strerror})")
        raise PolicyLoadError([problem]) from exc
    cases: list[Case] = []
    root = reader.compose(data)
    if root is not None:
        top = reader.mapping(root, "the cases file", ("cases",), ())
        if top is not None and "cases" in top:
            names: set[str] = set()
            for item in reader.sequence(top["cases"], "cases") or []:
                case = _case(reader, item, names)
                if case is not None:
                    cases.append(case)
    reader.check()
    return cases


def _case(r: Reader, node: Node, names: set[str]) -> Case | None:
    spec = r.mapping(node, "a case", ("name", "request", "expect"), ())
    if spec is None or len(spec) < 3:
        return None
    name = r.string(spec["name"], "the case name")
    if name is None:
        return None
    if name in names:
        r.fail(spec["name"], f"case name {name!r} is used twice")
        return None
    names.add(name)
    request = _request(r, spec["request"], f"the request of case {name!r}")
    expect = _expect(r, spec["expect"], f"the expectation of case {name!r}")
    if request is None or expect is None:
        return None
    return Case(name, node.start_mark.line + 1, request, expect)


def _request(r: Reader, node: Node, what: str) -> Request | None:
    spec = r.mapping(node, what, _REQUEST_REQUIRED, _REQUEST_OPTIONAL)
    if spec is None or any(k not in spec for k in _REQUEST_REQUIRED):
        return None
    text = {k: r.string(spec[k], f"{k} in {what}") for k in _REQUEST_REQUIRED[:4]}
    categories = tuple(v for v, _ in r.strings(spec["categories"], f"categories in {what}"))
    roles: frozenset[str] = frozenset()
    if "roles" in spec:
        roles = frozenset(v for v, _ in r.strings(spec["roles"], f"roles in {what}"))
    accepted = False
    if "case_accepted" in spec:
        accepted = bool(r.boolean(spec["case_accepted"], f"case_accepted in {what}"))
    grounds: set[tuple[str, str]] = set()
    if "grounds" in spec:
        known = [g.value for g in Ground]
        for category, _key, value in r.keyed(spec["grounds"], f"grounds in {what}") or []:
            for ground, item in r.strings(value, f"grounds of {category!r} in {what}"):
                if ground not in known:
                    r.fail(item, f"ground {ground!r} is unknown; known: {', '.join(known)}")
                else:
                    grounds.add((category, ground))
    if any(v is None for v in text.values()) or not categories:
        return None
    try:
        return Request(
            activity=str(text["activity"]),
            phase=str(text["phase"]),
            provider=str(text["provider"]),
            recipient=str(text["recipient"]),
            categories=categories,
            roles=roles,
            case_accepted=accepted,
            grounds=frozenset(grounds),
        )
    except PolicyError as exc:
        r.fail(node, f"{what}: {exc}")
        return None


def _expect(r: Reader, node: Node, what: str) -> Expectation | None:
    spec = r.mapping(node, what, ("outcome",), _EXPECT_OPTIONAL)
    if spec is None or "outcome" not in spec:
        return None
    outcome = r.string(spec["outcome"], f"outcome in {what}")
    if outcome is not None and outcome not in Outcome.__members__.values():
        r.fail(
            spec["outcome"],
            f"outcome {outcome!r} is unknown; known: {', '.join(o.value for o in Outcome)}",
        )
        return None
    released = None
    if "released" in spec:
        released = frozenset(v for v, _ in r.strings(spec["released"], f"released in {what}"))
    withheld = None
    if "withheld" in spec:
        withheld = {}
        for category, _key, value in r.keyed(spec["withheld"], f"withheld in {what}") or []:
            reason = r.string(value, f"the reason for {category!r} in {what}")
            if reason is not None and reason not in REASONS:
                r.fail(value, f"reason {reason!r} is unknown; known: {', '.join(REASONS)}")
            elif reason is not None:
                withheld[category] = reason
    rules = None
    if "rules" in spec:
        rules = tuple(v for v, _ in r.strings(spec["rules"], f"rules in {what}"))
    bases = None
    if "legal_basis" in spec:
        bases = tuple(v for v, _ in r.strings(spec["legal_basis"], f"legal_basis in {what}"))
    minimise = None
    if "minimise" in spec:
        minimise = {}
        for category, _key, value in r.keyed(spec["minimise"], f"minimise in {what}") or []:
            fields = {}
            for fname, _fkey, tnode in r.keyed(value, f"minimise.{category} in {what}") or []:
                how = r.string(tnode, f"the transform of {category}.{fname} in {what}")
                if how is not None:
                    fields[fname] = how
            minimise[category] = fields
    if outcome is None:
        return None
    return Expectation(Outcome(outcome), released, withheld, rules, bases, minimise)


def check_case(case: Case, decision: Decision) -> CaseResult:
    """Compare a decision with a case's expectation."""
    want = case.expect
    bad: list[str] = []
    if decision.outcome is not want.outcome:
        bad.append(f"outcome is {decision.outcome.value}, expected {want.outcome.value}")
    if want.released is not None and set(decision.released) != want.released:
        bad.append(f"released {sorted(decision.released)}, expected {sorted(want.released)}")
    if want.withheld is not None and dict(decision.withheld) != want.withheld:
        bad.append(f"withheld {dict(decision.withheld)}, expected {want.withheld}")
    if want.rules is not None and tuple(sorted(decision.rule_ids)) != tuple(sorted(want.rules)):
        bad.append(f"rules {list(decision.rule_ids)}, expected {list(want.rules)}")
    if want.legal_basis is not None and decision.legal_basis != want.legal_basis:
        bad.append(f"legal basis {list(decision.legal_basis)}, expected {list(want.legal_basis)}")
    for category, fields in (want.minimise or {}).items():
        result = decision.result(category)
        if result is None or result.plan is None:
            bad.append(f"no minimisation plan for {category!r}: it was not released")
            continue
        plan = result.plan.describe()
        kept = {f: how for f, how in plan.items() if how != "drop"}
        if kept != fields:
            bad.append(f"minimise {category}: {kept}, expected {fields}")
    return CaseResult(case, tuple(bad))


def run_cases(evaluator: Evaluator, cases: list[Case]) -> list[CaseResult]:
    """Decide every case and compare."""
    return [check_case(case, evaluator.decide(case.request)) for case in cases]
