"""Distinct-case totals: cases, not tag entries, with small totals and their giveaways hidden."""

from __future__ import annotations

from gateway.cases import SignalCount
from gateway.cases.case_totals import CaseTotal, suppress_case_totals
from gateway.cases.suppression import suppress
from policy.vocabulary import Phase

CC, NZ = "complexe-casuistiek", "nazorg-ex-gedetineerden"


def _published(totals: tuple[CaseTotal, ...]) -> dict[tuple[str, str], int | None]:
    return {(t.dimension.value, t.key): None if t.suppressed else t.count for t in totals}


def test_a_lone_small_outcome_takes_a_sibling_and_tags_follow_the_table() -> None:
    cells = [
        SignalCount(CC, Phase.CASUSOVERLEG, "", "huisvesting", 30),
        SignalCount(CC, Phase.AFSCHALING, "doelen-bereikt", "", 20),
        SignalCount(CC, Phase.AFSCHALING, "verhuisd", "", 12),
        SignalCount(CC, Phase.AFSCHALING, "overleden", "", 3),
    ]
    table = suppress(cells, 10)
    counts = {
        ("all", "*"): 65,
        ("theme", CC): 65,
        ("phase", "casusoverleg"): 30,
        ("phase", "afschaling"): 35,
        ("outcome", ""): 30,
        ("outcome", "doelen-bereikt"): 20,
        ("outcome", "verhuisd"): 12,
        ("outcome", "overleden"): 3,
    }
    got = _published(suppress_case_totals(counts, table))
    assert got == {
        ("all", "*"): 65,
        ("theme", CC): 65,
        ("phase", "casusoverleg"): 30,
        ("phase", "afschaling"): 35,
        # 3 is small; with afschaling published it would be 35 - 20 - 12: the 12 goes too.
        ("outcome", "doelen-bereikt"): 20,
        ("outcome", "verhuisd"): None,
        ("outcome", "overleden"): None,
        ("bottleneck", ""): 35,
        ("bottleneck", "huisvesting"): 30,
    }


def test_a_theme_the_table_hides_is_hidden_here_too() -> None:
    cells = [
        SignalCount(CC, Phase.TRIAGE, "", "schulden", 40),
        SignalCount(CC, Phase.TRIAGE, "", "", 15),
        SignalCount(NZ, Phase.TRIAGE, "", "", 4),
    ]
    table = suppress(cells, 10)
    hidden_by_table = {t.key for t in table.totals if t.suppressed}
    assert NZ in hidden_by_table
    counts = {("all", "*"): 59, ("theme", CC): 55, ("theme", NZ): 4, ("phase", "triage"): 59}
    got = _published(suppress_case_totals(counts, table))
    assert got[("theme", NZ)] is None
    # CC = all - NZ: one of them is hidden as well.
    assert got[("theme", CC)] is None or got[("all", "*")] is None
    for theme in hidden_by_table & {CC, NZ}:
        assert got[("theme", theme)] is None
    assert all(v is None or v >= 10 for v in got.values())


def test_no_cases_no_totals() -> None:
    assert suppress_case_totals({}, suppress([], 10)) == ()
