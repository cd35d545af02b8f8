"""Minimisation of facts: every transform, and nothing undeclared passes."""

from __future__ import annotations

import pytest
from schakel.v1 import common_pb2

from policy.evaluator import Decision, Evaluator, Request, grounds_of
from policy.minimise import FactRefusedError, apply_plan, minimise_fact, minimise_facts
from policy.model import Transform, TransformKind
from tests.support.policy import SMALL, small

BSN = "123456782"

TRANSFORMS = """\
    minimise:
      regular.cat:
        status: keep
        count: {band: [0, 1, 3, 6]}
        flag: presence
        when: coarsen-month
        contact: keep-contact
"""


def _text(v: str) -> common_pb2.FactValue:
    return common_pb2.FactValue(text=v)


def _num(v: int) -> common_pb2.FactValue:
    return common_pb2.FactValue(number=v)


def _date(y: int, m: int, d: int) -> common_pb2.FactValue:
    return common_pb2.FactValue(date=common_pb2.Date(year=y, month=m, day=d))


def _fact(category: str = "regular.cat", /, **fields: common_pb2.FactValue) -> common_pb2.Fact:
    fact = common_pb2.Fact(category=category)
    for name, value in fields.items():
        fact.fields[name].CopyFrom(value)
    return fact


def _decision(minimise: str = TRANSFORMS) -> Decision:
    text = SMALL.replace("    minimise:\n      regular.cat: {status: keep}\n", minimise)
    evaluator = small(text)
    request = Request("act.one", "casusoverleg", "politie", "gemeente", ("regular.cat",))
    decision = evaluator.decide(request)
    assert decision.released == ("regular.cat",)
    return decision


def test_every_transform_of_a_rule_is_applied() -> None:
    fact = _fact(
        status=_text("a"),
        count=_num(4),
        flag=common_pb2.FactValue(flag=False),
        when=_date(2026, 3, 17),
        contact=_text("regie@zvh-haaglanden.example"),
    )
    out = minimise_fact(fact, _decision())
    assert out.category == "regular.cat"
    assert out.fields["status"].text == "a"
    assert out.fields["count"].text == "3-5"
    assert out.fields["flag"].WhichOneof("kind") == "flag"
    assert out.fields["flag"].flag is False
    assert out.fields["when"].date == common_pb2.Date(year=2026, month=3, day=0)
    assert out.fields["contact"].text == "regie@zvh-haaglanden.example"
    assert fact.fields["count"].number == 4, "the input fact must not change"


def test_coarsen_year_and_drop() -> None:
    decision = _decision("    minimise:\n      regular.cat: {when: coarsen-year, status: drop}\n")
    out = minimise_fact(_fact(status=_text("b"), when=_date(2026, 3, 17)), decision)
    assert set(out.fields) == {"when"}
    assert out.fields["when"].date == common_pb2.Date(year=2026)


def test_a_leap_day_is_a_valid_date() -> None:
    out = minimise_fact(_fact(when=_date(2024, 2, 29)), _decision())
    assert out.fields["when"].date == common_pb2.Date(year=2024, month=2)


def test_coarsening_an_already_coarse_date_keeps_it_coarse() -> None:
    out = minimise_fact(_fact(when=_date(2025, 0, 0)), _decision())
    assert out.fields["when"].date == common_pb2.Date(year=2025)


@pytest.mark.parametrize(
    ("value", "label"),
    [(-1, "<0"), (0, "0"), (1, "1-2"), (2, "1-2"), (3, "3-5"), (5, "3-5"), (6, "6+"), (99, "6+")],
)
def test_band_edges(value: int, label: str) -> None:
    out = minimise_fact(_fact(count=_num(value)), _decision())
    assert out.fields["count"].text == label


@pytest.mark.parametrize(
    ("field", "value", "present"),
    [
        ("count", _num(0), False),
        ("count", _num(2), True),
        ("status", _text("a"), True),
        ("flag", common_pb2.FactValue(flag=True), True),
        ("when", _date(2020, 1, 1), True),
    ],
)
def test_presence_reduces_any_value_to_yes_or_no(
    field: str, value: common_pb2.FactValue, present: bool
) -> None:
    decision = _decision(f"    minimise:\n      regular.cat: {{{field}: presence}}\n")
    out = minimise_fact(_fact(**{field: value}), decision)
    assert out.fields[field].WhichOneof("kind") == "flag"
    assert out.fields[field].flag is present


def test_fields_the_rule_does_not_name_are_dropped() -> None:
    decision = _decision("    minimise:\n      regular.cat: {status: keep}\n")
    out = minimise_fact(
        _fact(status=_text("a"), count=_num(3), contact=_text("x@example")), decision
    )
    assert set(out.fields) == {"status"}


def test_undeclared_fields_never_pass() -> None:
    fact = _fact(status=_text("a"), bsn=_text(BSN), naam=_text("Jan"), notitie=_num(1))
    out = minimise_fact(fact, _decision())
    assert set(out.fields) == {"status"}
    assert BSN not in str(out)


def test_a_fact_of_a_withheld_category_is_refused() -> None:
    evaluator = small()
    decision = evaluator.decide(
        Request("act.one", "triage", "politie", "gemeente", ("regular.cat",))
    )
    with pytest.raises(FactRefusedError, match="withheld \\(phase-not-allowed\\)"):
        minimise_fact(_fact(status=_text("a")), decision)


def test_a_fact_of_a_category_not_asked_for_is_refused() -> None:
    with pytest.raises(FactRefusedError, match="not part of the decision"):
        minimise_fact(_fact("health.cat"), _decision())


def test_a_plan_is_only_for_its_own_category() -> None:
    plan = _decision().results[0].plan
    assert plan is not None
    with pytest.raises(FactRefusedError, match="cannot use the plan"):
        apply_plan(_fact("health.cat"), plan)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"count": _text(BSN)}, "'count' .* must carry a number"),
        ({"status": _num(1)}, "'status' .* must carry a text"),
        ({"status": _text(BSN)}, "'status' .* code outside"),
        ({"when": _date(2026, 13, 1)}, "'when' .* not a valid"),
        ({"when": _date(2026, 0, 5)}, "'when' .* not a valid"),
        ({"when": _date(0, 1, 1)}, "'when' .* not a valid"),
        ({"when": _date(2026, 2, 29)}, "'when' .* not a valid"),
        ({"when": _date(2026, 4, 31)}, "'when' .* not a valid"),
        ({"contact": _text("")}, "'contact' .* contact handle"),
        ({"contact": _text(f"{BSN}\n")}, "'contact' .* contact handle"),
        ({"contact": _text("x" * 257)}, "'contact' .* contact handle"),
        ({"flag": common_pb2.FactValue()}, "'flag' .* must carry a flag"),
    ],
)
def test_malformed_declared_fields_are_refused_without_echoing_content(
    fields: dict[str, common_pb2.FactValue], message: str
) -> None:
    with pytest.raises(FactRefusedError, match=message) as info:
        minimise_fact(_fact(**fields), _decision())
    assert BSN not in str(info.value)


def test_a_batch_with_one_bad_fact_yields_nothing() -> None:
    decision = _decision()
    good = _fact(status=_text("a"))
    bad = _fact(status=_num(3))
    assert len(minimise_facts([good, good], decision)) == 2
    with pytest.raises(FactRefusedError):
        minimise_facts([good, bad], decision)


def test_baseline_politie_antecedenten_are_banded_and_coarsened(baseline: Evaluator) -> None:
    request = Request(
        "zvh.complexe-casuistiek",
        "casusoverleg",
        "politie",
        "gemeente",
        ("justitie.antecedenten",),
        case_accepted=True,
    )
    fact = _fact(
        "justitie.antecedenten",
        aantal=_num(4),
        zwaarste_soort=_text("geweld"),
        laatste_datum=_date(2025, 11, 2),
        lopende_zaak=common_pb2.FactValue(flag=True),
        contact=_text("zvh-desk@politie.example"),
        bsn=_text(BSN),
    )
    out = minimise_fact(fact, baseline.decide(request))
    assert dict(out.fields) == {
        "aantal": _text("3-5"),
        "zwaarste_soort": _text("geweld"),
        "laatste_datum": common_pb2.FactValue(date=common_pb2.Date(year=2025)),
        "contact": _text("zvh-desk@politie.example"),
    }


def test_baseline_ggz_facts_need_the_recorded_consent(baseline: Evaluator) -> None:
    base = {
        "activity": "zvh.complexe-casuistiek",
        "phase": "casusoverleg",
        "provider": "ggz",
        "recipient": "gemeente",
        "categories": ("zorg.in_zorg",),
        "case_accepted": True,
    }
    fact = _fact("zorg.in_zorg", in_zorg=common_pb2.FactValue(flag=True), sinds=_date(2024, 5, 3))
    with pytest.raises(FactRefusedError, match="art9-no-ground"):
        minimise_fact(fact, baseline.decide(Request(**base)))  # type: ignore[arg-type]
    consent = grounds_of({"zorg.in_zorg": ["consent"]})
    out = minimise_fact(fact, baseline.decide(Request(**base, grounds=consent)))  # type: ignore[arg-type]
    assert out.fields["sinds"].date == common_pb2.Date(year=2024)


def test_band_labels_of_a_single_edge() -> None:
    band = Transform(TransformKind.BAND, (1,))
    assert [band.band_label(v) for v in (0, 1, 7)] == ["<1", "1+", "1+"]


def test_minimising_again_changes_nothing_and_never_makes_a_value_finer() -> None:
    """What the vault keeps minimised can be released from there under a plan as coarse."""
    decision = _decision()
    raw = _fact(
        status=_text("a"),
        count=_num(4),
        flag=common_pb2.FactValue(flag=True),
        when=_date(2026, 3, 17),
        contact=_text("regie@zvh-haaglanden.example"),
    )
    once = minimise_fact(raw, decision)
    assert minimise_fact(once, decision) == once
    coarser = _decision(
        TRANSFORMS.replace("coarsen-month", "coarsen-year").replace("keep\n", "drop\n", 1)
    )
    assert minimise_fact(once, coarser) == minimise_fact(raw, coarser)
    finer = _decision(TRANSFORMS.replace("{band: [0, 1, 3, 6]}", "keep"))
    with pytest.raises(FactRefusedError, match=r"'count' .* must carry a number"):
        minimise_fact(once, finer)
    other_bands = _decision(TRANSFORMS.replace("[0, 1, 3, 6]", "[0, 10]"))
    with pytest.raises(FactRefusedError, match=r"'count' .* must carry a number"):
        minimise_fact(once, other_bands)
    present = _decision(TRANSFORMS.replace("{band: [0, 1, 3, 6]}", "presence"))
    reduced = minimise_fact(raw, present)
    assert reduced.fields["count"] == common_pb2.FactValue(flag=True)
    assert minimise_fact(reduced, present) == reduced
