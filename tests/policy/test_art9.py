"""Art. 9 data needs a recorded ground whatever the bundle says."""

from __future__ import annotations

import itertools

from policy.evaluator import ART9_NO_GROUND, GROUND_UNMET, Outcome, Request, grounds_of
from policy.model import Ground
from tests.support.policy import SMALL, small


def _ask(**grounds: list[str]) -> Request:
    return Request(
        "act.one",
        "casusoverleg",
        "ggz",
        "gemeente",
        ("health.cat",),
        case_accepted=True,
        grounds=grounds_of({k.replace("_", "."): v for k, v in grounds.items()}),
    )


def test_an_unconditional_art9_rule_still_needs_a_ground() -> None:
    evaluator = small()
    assert any("r-health-unconditional" in w for w in evaluator.policy.warnings)
    decision = evaluator.decide(_ask())
    assert decision.outcome is Outcome.DENY
    assert decision.withheld == (("health.cat", ART9_NO_GROUND),)
    assert decision.results[0].rule_id == "r-health-unconditional"


def test_each_ground_opens_an_unconditional_art9_rule() -> None:
    evaluator = small()
    for ground in Ground:
        decision = evaluator.decide(_ask(health_cat=[ground.value]))
        assert decision.outcome is Outcome.ALLOW
        assert decision.results[0].ground == ground.value


def test_a_ground_for_another_category_does_not_count() -> None:
    decision = small().decide(_ask(regular_cat=["consent"]))
    assert decision.withheld == (("health.cat", ART9_NO_GROUND),)


def test_a_rule_restricting_grounds_refuses_the_others() -> None:
    text = SMALL.replace(
        "    legal_basis: AVG-6.1e\n",
        "    legal_basis: AVG-6.1e\n    grounds: [consent]\n",
    )
    evaluator = small(text)
    assert not evaluator.policy.warnings
    assert evaluator.decide(_ask(health_cat=["consent"])).outcome is Outcome.ALLOW
    refused = evaluator.decide(_ask(health_cat=["legal-duty", "conflict-van-plichten"]))
    assert refused.withheld == (("health.cat", GROUND_UNMET),)
    assert evaluator.decide(_ask()).withheld == (("health.cat", ART9_NO_GROUND),)


def test_the_override_holds_for_every_condition_set_without_a_ground() -> None:
    evaluator = small()
    for accepted, other in itertools.product((False, True), (None, "regular.cat")):
        grounds = frozenset({(other, "consent")}) if other else frozenset()
        request = Request(
            "act.one",
            "casusoverleg",
            "ggz",
            "gemeente",
            ("health.cat", "regular.cat"),
            case_accepted=accepted,
            grounds=grounds,
        )
        assert "health.cat" not in evaluator.decide(request).released
