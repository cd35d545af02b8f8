"""The baseline bundle, table-driven (cases.yaml) and over the whole request grid."""

from __future__ import annotations

import hashlib

import pytest
from schakel.v1 import common_pb2

from policy import evaluator as ev
from policy.cases import CASES_FILE, Case, check_case, load_cases
from policy.cli import grid
from policy.evaluator import CategoryResult, Evaluator, Outcome, Request, grounds_of
from policy.model import Condition, PolicyError, Sensitivity
from policy.vocabulary import phase_name
from tests.support.policy import BASELINE

CASES = load_cases(BASELINE.parent / CASES_FILE)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_baseline_case(baseline: Evaluator, case: Case) -> None:
    result = check_case(case, baseline.decide(case.request))
    assert result.passed, result.mismatches


def test_cases_cover_every_phase_and_the_art9_reasons() -> None:
    phases = {c.request.phase for c in CASES}
    assert {"aanmelding", "triage", "casusoverleg", "afschaling"} <= phases
    reasons = {r for c in CASES for r in (c.expect.withheld or {}).values()}
    assert {"art9-no-ground", "unknown-activity", "unknown-phase", "unknown-category"} <= reasons


_GRID: list[Request] = []
_SWEEP: list[tuple[Request, CategoryResult]] = []


def _grid(baseline: Evaluator) -> list[Request]:
    """Every single-category request over the baseline's vocabulary (built once)."""
    if not _GRID:
        _GRID.extend(grid(baseline.policy, baseline.policy))
    return _GRID


def _sweep(baseline: Evaluator) -> list[tuple[Request, CategoryResult]]:
    """Each grid request with its result (computed once, shared by the grid tests)."""
    if not _SWEEP:
        _SWEEP.extend((r, baseline.results(r)[0]) for r in _grid(baseline))
    return _SWEEP


def test_results_agree_with_decide(baseline: Evaluator) -> None:
    for request, result in _sweep(baseline)[::97]:
        decision = baseline.decide(request)
        assert decision.results == (result,)
        assert decision.released == ((result.category,) if result.released else ())


def test_aanmelding_and_triage_reveal_only_bekend(baseline: Evaluator) -> None:
    """Besides hit/no-hit, only the referral itself crosses, to the regie, and a hand-over.

    A hand-over (overdracht) goes from one ZVH to another ZVH only.
    """
    released_bekend = 0
    for request, result in _sweep(baseline):
        if request.phase in ("aanmelding", "triage") and result.released:
            if result.category == "aanmelding":
                assert request.phase == "aanmelding", request
                assert request.recipient == "zvh", request
                continue
            if result.category == "overdracht":
                assert (request.provider, request.recipient) == ("zvh", "zvh"), request
                continue
            assert result.category == "bekend", request
            released_bekend += 1
    assert released_bekend > 0


def test_afschaling_reveals_only_an_outcome(baseline: Evaluator) -> None:
    released = set()
    for request, result in _sweep(baseline):
        if request.phase == "afschaling" and result.released:
            released.add(result.category)
    assert released == {"uitkomst"}
    bundle = baseline.policy.bundle
    outcome_field = bundle.categories["uitkomst"].fields["uitkomst"]
    assert outcome_field.values == frozenset(bundle.outcomes)


def test_art9_never_crosses_without_a_recorded_ground(baseline: Evaluator) -> None:
    art9 = {
        name
        for name, cat in baseline.policy.bundle.categories.items()
        if cat.sensitivity is Sensitivity.ART9
    }
    assert art9 == {"zorg.in_zorg", "zorg.crisismaatregel"}
    crossed_on_ground = 0
    for request, result in _sweep(baseline):
        if result.category in art9 and result.released:
            assert any(cat == result.category for cat, _ in request.grounds), request
            assert result.ground
            crossed_on_ground += 1
    assert crossed_on_ground > 0


def test_a_partner_never_receives_categories_outside_its_rule(baseline: Evaluator) -> None:
    rules = {r.id: r for r in baseline.policy.bundle.rules}
    released = 0
    for request, result in _sweep(baseline):
        if not result.released:
            continue
        released += 1
        rule = rules[result.rule_id]
        assert request.activity in rule.activities
        assert request.phase in rule.phases
        assert request.provider in rule.providers
        assert request.recipient in rule.recipients or request.roles & set(rule.recipients)
        assert result.category in rule.categories
        if Condition.CASE_ACCEPTED in rule.conditions:
            assert request.case_accepted
        assert result.plan is not None and result.plan.rule_id == rule.id
    assert released > 100


def test_the_housing_corporation_gets_no_justice_or_care_data(baseline: Evaluator) -> None:
    forbidden = {
        "justitie.antecedenten",
        "justitie.toezicht",
        "detentie",
        "zorg.in_zorg",
        "zorg.crisismaatregel",
        "veiligheid.risico",
    }
    checked = 0
    for request, result in _sweep(baseline):
        if request.recipient == "woningcorporatie":
            checked += 1
            assert not (result.released and result.category in forbidden), request
    assert checked > 0


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"activity": "zvh.onbekend"}, ev.UNKNOWN_ACTIVITY),
        ({"phase": "nazorg"}, ev.UNKNOWN_PHASE),
        ({"phase": ""}, ev.UNKNOWN_PHASE),
        ({"provider": "bank"}, ev.UNKNOWN_PROVIDER),
        ({"recipient": "journalist"}, ev.UNKNOWN_RECIPIENT),
        ({"categories": ("justitie.dossier",)}, ev.UNKNOWN_CATEGORY),
    ],
)
def test_unknowns_are_denied_with_the_reason(
    baseline: Evaluator, change: dict[str, object], reason: str
) -> None:
    fields: dict[str, object] = {
        "activity": "zvh.complexe-casuistiek",
        "phase": "casusoverleg",
        "provider": "politie",
        "recipient": "gemeente",
        "categories": ("justitie.antecedenten",),
        "case_accepted": True,
    }
    assert baseline.decide(Request(**fields)).outcome is Outcome.ALLOW  # type: ignore[arg-type]
    fields.update(change)
    decision = baseline.decide(Request(**fields))  # type: ignore[arg-type]
    assert decision.outcome is Outcome.DENY
    assert decision.withheld == ((decision.results[0].category, reason),)
    assert decision.rule_ids == () and decision.legal_basis == ()


def test_to_proto_carries_the_whole_decision(baseline: Evaluator) -> None:
    request = Request(
        "zvh.complexe-casuistiek",
        "casusoverleg",
        "ggz",
        "zvh",
        ("zorg.in_zorg", "zorg.crisismaatregel", "bekend"),
        roles=frozenset({"procesregisseur"}),
        case_accepted=True,
        grounds=grounds_of({"zorg.in_zorg": ["consent"]}),
    )
    summary = baseline.decide(request).to_proto()
    assert summary.outcome == common_pb2.DECISION_OUTCOME_PARTIAL
    assert list(summary.released) == ["zorg.in_zorg"]
    assert [(w.category, w.reason) for w in summary.withheld] == [
        ("zorg.crisismaatregel", "art9-no-ground"),
        ("bekend", "phase-not-allowed"),
    ]
    assert list(summary.rule_ids) == ["cc-ggz-in-zorg"]
    assert summary.legal_basis.code == "AVG-6.1e,toestemming"
    assert summary.bundle_hash == hashlib.sha256(BASELINE.read_bytes()).hexdigest()


def test_deny_summary_has_no_basis(baseline: Evaluator) -> None:
    request = Request("zvh.signalering", "triage", "gemeente", "zvh", ("bekend",))
    summary = baseline.decide(request).to_proto()
    assert summary.outcome == common_pb2.DECISION_OUTCOME_DENY
    assert summary.legal_basis.code == "" and not summary.released


def test_phase_names_follow_the_proto_enum() -> None:
    assert phase_name(common_pb2.PHASE_TRIAGE) == "triage"
    assert phase_name(common_pb2.PHASE_AFSCHALING) == "afschaling"
    assert phase_name(common_pb2.PHASE_UNSPECIFIED) == ""


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"categories": ()}, "at least one category"),
        ({"categories": ("bekend", "bekend")}, "twice"),
        ({"grounds": frozenset({("bekend", "vibes")})}, "unknown ground 'vibes'"),
    ],
)
def test_malformed_requests_are_refused(kwargs: dict[str, object], message: str) -> None:
    fields: dict[str, object] = {
        "activity": "a",
        "phase": "triage",
        "provider": "politie",
        "recipient": "zvh",
        "categories": ("bekend",),
    }
    fields.update(kwargs)
    with pytest.raises(PolicyError, match=message):
        Request(**fields)  # type: ignore[arg-type]


def test_lists_and_sets_are_accepted_in_a_request(baseline: Evaluator) -> None:
    request = Request(
        "zvh.complexe-casuistiek",
        "casusoverleg",
        "ggz",
        "zvh",
        ["zorg.in_zorg"],  # type: ignore[arg-type]
        roles={"procesregisseur"},  # type: ignore[arg-type]
        case_accepted=True,
        grounds={("zorg.in_zorg", "consent")},  # type: ignore[arg-type]
    )
    assert request.categories == ("zorg.in_zorg",)
    assert baseline.decide(request).released == ("zorg.in_zorg",)


def test_roles_widen_recipients_only_through_rules_naming_them(baseline: Evaluator) -> None:
    plain = Request("zvh.complexe-casuistiek", "triage", "politie", "gemeente", ("bekend",))
    assert baseline.decide(plain).outcome is Outcome.DENY
    as_regie = Request(
        "zvh.complexe-casuistiek",
        "triage",
        "politie",
        "gemeente",
        ("bekend",),
        roles=frozenset({"procesregisseur"}),
    )
    assert baseline.decide(as_regie).released == ("bekend",)
    unknown_role = Request(
        "zvh.complexe-casuistiek",
        "triage",
        "politie",
        "gemeente",
        ("bekend",),
        roles=frozenset({"landelijk"}),
    )
    assert baseline.decide(unknown_role).outcome is Outcome.DENY


def test_cached_decisions_equal_fresh_ones_and_the_cache_is_bounded(
    baseline: Evaluator, monkeypatch: pytest.MonkeyPatch
) -> None:
    fresh = Evaluator(baseline.policy)
    monkeypatch.setattr(ev, "DECISION_CACHE_SIZE", 0)
    uncached = [fresh.decide(r) for r in _grid(baseline)[:3000]]
    monkeypatch.setattr(ev, "DECISION_CACHE_SIZE", 4)
    cached = Evaluator(baseline.policy)
    for _ in range(2):
        assert [cached.decide(r) for r in _grid(baseline)[:3000]] == uncached
    assert all(len(t.decisions) <= 4 for t in cached._tables.values())
