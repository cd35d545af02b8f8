"""Policy decisions and fact minimisation per second, in-process, one core.

The same-run baseline is a plain dictionary evaluator: one set look-up per
(activity, phase, provider, recipient, category), returning only yes/no. It
is the floor any index-based engine is measured against; ``decide()`` also
returns per-category reasons, rule ids, the legal basis, the bundle hash and
the minimisation plan. ``decide_uncached`` disables the decision cache so
every call assembles a new Decision from the precomputed per-key tables.
"""

from __future__ import annotations

import itertools
from pathlib import Path

from schakel.v1 import common_pb2

from policy import evaluator as ev
from policy.compiler import compile_bundle
from policy.evaluator import Evaluator, Request, grounds_of
from policy.loader import load_bundle
from policy.minimise import minimise_fact
from tests.bench.harness import Result, median_rate

AREA = "policy"
BASELINE = Path(__file__).resolve().parents[2] / "policy" / "bundles" / "baseline" / "bundle.yaml"
CALLS = 200_000
FACTS = 50_000
REPEATS = 7
BASE = "plain_dict_lookup"


def _requests() -> list[Request]:
    """A mix of what a node asks: hit/no-hit, uitvraag per provider, art. 9, denials."""
    act = "zvh.complexe-casuistiek"
    consent = grounds_of({"zorg.in_zorg": ["consent"]})
    asks = [
        ("triage", "politie", "zvh", ("bekend",), False, frozenset()),
        ("triage", "ggz", "zvh", ("bekend",), False, frozenset()),
        (
            "casusoverleg",
            "politie",
            "gemeente",
            ("justitie.antecedenten", "veiligheid.risico"),
            True,
            frozenset(),
        ),
        (
            "casusoverleg",
            "gemeente",
            "zvh",
            ("sociaal.huisvesting", "sociaal.inkomen_schulden", "sociaal.wmo_jeugd"),
            True,
            frozenset(),
        ),
        (
            "casusoverleg",
            "ggz",
            "gemeente",
            ("zorg.in_zorg", "zorg.crisismaatregel"),
            True,
            consent,
        ),
        (
            "casusoverleg",
            "politie",
            "woningcorporatie",
            ("justitie.antecedenten",),
            True,
            frozenset(),
        ),
        ("afschaling", "zvh", "politie", ("uitkomst",), True, frozenset()),
        ("triage", "politie", "gemeente", ("justitie.antecedenten",), False, frozenset()),
    ]
    return [
        Request(act, phase, provider, recipient, cats, case_accepted=acc, grounds=grounds)
        for phase, provider, recipient, cats, acc, grounds in asks
    ]


def _plain_dict(evaluator: Evaluator) -> set[tuple[str, str, str, str, str]]:
    """The (activity, phase, provider, recipient, category) tuples any rule allows."""
    return {
        (activity, phase, provider, recipient, category)
        for (activity, phase, provider, recipient), per_cat in evaluator.policy.index.items()
        for category in per_cat
    }


def _facts() -> list[common_pb2.Fact]:
    fact = common_pb2.Fact(category="justitie.antecedenten")
    fact.fields["aantal"].number = 4
    fact.fields["zwaarste_soort"].text = "geweld"
    fact.fields["laatste_datum"].date.CopyFrom(common_pb2.Date(year=2025, month=11, day=2))
    fact.fields["lopende_zaak"].flag = True
    fact.fields["contact"].text = "zvh-desk@politie.example"
    fact.fields["onbekend_veld"].text = "dropped"
    return [fact]


def run() -> list[Result]:
    """decide() and minimise rates on the baseline bundle, with the plain-dict baseline."""
    evaluator = Evaluator(compile_bundle(load_bundle(BASELINE)))
    requests = _requests()
    stream = list(itertools.islice(itertools.cycle(requests), CALLS))
    allowed = _plain_dict(evaluator)

    def plain() -> object:
        return [
            [(r.activity, r.phase, r.provider, r.recipient, c) in allowed for c in r.categories]
            for r in stream
        ]

    def decide() -> object:
        d = evaluator.decide
        return [d(r) for r in stream]

    results = [
        Result(
            AREA,
            BASE,
            median_rate(plain, CALLS, REPEATS),
            "calls/s",
            notes="set look-up per category, yes/no only",
        ),
        Result(
            AREA,
            "decide",
            median_rate(decide, CALLS, REPEATS),
            "calls/s",
            baseline=BASE,
            notes=f"{len(requests)} request shapes, 1-3 categories each, warm caches",
        ),
    ]
    saved = ev.DECISION_CACHE_SIZE
    ev.DECISION_CACHE_SIZE = 0
    try:
        fresh = Evaluator(evaluator.policy)

        def decide_uncached() -> object:
            d = fresh.decide
            return [d(r) for r in stream]

        results.append(
            Result(
                AREA,
                "decide_uncached",
                median_rate(decide_uncached, CALLS, REPEATS),
                "calls/s",
                baseline=BASE,
                notes="decision cache off, per-key tables warm",
            )
        )
    finally:
        ev.DECISION_CACHE_SIZE = saved

    decision = evaluator.decide(requests[2])
    facts = list(itertools.islice(itertools.cycle(_facts()), FACTS))

    def minimise() -> object:
        return [minimise_fact(f, decision) for f in facts]

    results.append(
        Result(
            AREA,
            "minimise_fact",
            median_rate(minimise, FACTS, REPEATS),
            "facts/s",
            notes="5 declared fields (band, keep, coarsen-year, drop, keep-contact) + 1 unknown",
        )
    )
    return results
