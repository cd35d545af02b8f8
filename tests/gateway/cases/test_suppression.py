"""Small-cell and complementary suppression over generated tables.

The protection check here is independent of the algorithm's own graph
argument: it searches moves (each suppressed cell up or down by at most one)
that keep every published number, and every listed cell at least 1.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.cases import SignalCount
from gateway.cases.suppression import (
    ALL,
    PublishedCell,
    PublishedTotal,
    SuppressedTable,
    SuppressionError,
    TotalKind,
    suppress,
)
from policy.vocabulary import Phase

THEMES = ("complexe-casuistiek", "huiselijk-geweld", "nazorg-ex-gedetineerden")
TAGS = ("", "huisvesting", "schulden")
SUBCELLS = ((Phase.CASUSOVERLEG, ""), (Phase.AFSCHALING, "doelen-bereikt"))
KEYS = [(t, p, o, b) for t in THEMES for p, o in SUBCELLS for b in TAGS]


def cells_of(counts: dict[tuple[str, Phase, str, str], int]) -> list[SignalCount]:
    return [SignalCount(*key, count) for key, count in counts.items()]


def tables(max_cells: int) -> st.SearchStrategy[list[SignalCount]]:
    return st.dictionaries(st.sampled_from(KEYS), st.integers(0, 30), max_size=max_cells).map(
        cells_of
    )


def totals(table: SuppressedTable, kind: TotalKind) -> dict[str, tuple[int, bool]]:
    return {t.key: (t.count, t.suppressed) for t in table.totals if t.kind is kind}


def check_shape(cells: Sequence[SignalCount], table: SuppressedTable) -> None:
    """Published numbers are true and at least k; totals never isolate one suppressed cell."""
    k = table.k
    truth = {(c.theme, c.phase, c.outcome, c.bottleneck): c.count for c in cells}
    listed = {(c.theme, c.phase, c.outcome, c.bottleneck): c for c in table.cells}
    assert set(listed) == {key for key, n in truth.items() if n > 0}
    for key, cell in listed.items():
        if cell.suppressed:
            assert cell.count == 0
        else:
            assert cell.count == truth[key] >= k
    assert all(listed[key].suppressed for key, n in truth.items() if 0 < n < k)
    for kind, dim in ((TotalKind.THEME, 0), (TotalKind.BOTTLENECK, 3)):
        for value, (count, suppressed) in totals(table, kind).items():
            members = [c for key, c in listed.items() if key[dim] == value]
            real = sum(truth[key] for key in listed if key[dim] == value)
            assert suppressed or count == real >= k
            if not suppressed:
                assert sum(c.suppressed for c in members) != 1
            else:
                assert count == 0 and any(c.suppressed for c in members)
    grand = totals(table, TotalKind.GRAND)[ALL]
    real = sum(truth.values())
    assert grand == (0, True) or grand == (real, False)
    if not grand[1] and real:
        assert real >= k


def unprotected(cells: Sequence[SignalCount], table: SuppressedTable) -> set[str]:
    """The suppressed numbers that no feasible ±1 move changes (empty when all are safe)."""
    truth = {(c.theme, c.phase, c.outcome, c.bottleneck): c.count for c in cells}
    hidden = sorted(
        (c.theme, c.phase, c.outcome, c.bottleneck) for c in table.cells if c.suppressed
    )
    theme_totals = totals(table, TotalKind.THEME)
    tag_totals = totals(table, TotalKind.BOTTLENECK)
    grand_hidden = totals(table, TotalKind.GRAND)[ALL][1]
    todo = {f"cell {key}" for key in hidden}
    todo |= {f"theme {t}" for t, (_, s) in theme_totals.items() if s}
    todo |= {f"tag {b}" for b, (_, s) in tag_totals.items() if s}
    if grand_hidden:
        todo.add("grand")
    last_of_theme = {key[0]: i for i, key in enumerate(hidden)}
    moves: list[int] = []

    def finish() -> None:
        tag_sum: dict[str, int] = {}
        theme_sum: dict[str, int] = {}
        for key, d in zip(hidden, moves, strict=True):
            tag_sum[key[3]] = tag_sum.get(key[3], 0) + d
            theme_sum[key[0]] = theme_sum.get(key[0], 0) + d
        if any(tag_sum.get(b, 0) for b, (_, s) in tag_totals.items() if not s):
            return
        net = sum(moves, start=0)
        if not grand_hidden and net:
            return
        todo.difference_update(f"cell {key}" for key, d in zip(hidden, moves, strict=True) if d)
        todo.difference_update(f"theme {t}" for t, d in theme_sum.items() if d)
        todo.difference_update(f"tag {b}" for b, d in tag_sum.items() if d)
        if net:
            todo.discard("grand")

    def search(i: int, theme_run: int) -> None:
        if not todo:
            return
        if i == len(hidden):
            finish()
            return
        key = hidden[i]
        for d in (0, 1, -1):
            if truth[key] + d < 1:
                continue
            run = theme_run + d
            if last_of_theme[key[0]] == i:
                if not theme_totals[key[0]][1] and run:
                    continue
                run = 0
            moves.append(d)
            search(i + 1, run)
            moves.pop()

    search(0, 0)
    return todo


@settings(max_examples=150, deadline=None)
@given(tables(10), st.integers(1, 12))
def test_generated_tables_are_protected(cells: list[SignalCount], k: int) -> None:
    table = suppress(cells, k)
    check_shape(cells, table)
    assert unprotected(cells, table) == set()


@settings(max_examples=40, deadline=None)
@given(tables(len(KEYS)), st.integers(2, 15))
def test_larger_generated_tables_keep_the_published_rules(cells: list[SignalCount], k: int) -> None:
    check_shape(cells, suppress(cells, k))


def test_the_pair_rule_alone_would_leave_cells_pinned_by_their_lower_bound() -> None:
    # Every row and column has two suppressed ones, yet with every cell at least 1
    # and published totals of 2 each cell must be 1: more has to go.
    cells = [SignalCount(t, Phase.TRIAGE, "", b, 1) for t in THEMES[:2] for b in TAGS[1:]]
    table = suppress(cells, 2)
    assert all(c.suppressed for c in table.cells)
    assert any(t.suppressed for t in table.totals)
    assert unprotected(cells, table) == set()


def test_a_single_small_cell_takes_the_smallest_neighbours_with_it() -> None:
    counts = {
        ("complexe-casuistiek", Phase.TRIAGE, "", "huisvesting"): 3,
        ("complexe-casuistiek", Phase.TRIAGE, "", "schulden"): 40,
        ("complexe-casuistiek", Phase.CASUSOVERLEG, "", "huisvesting"): 25,
        ("complexe-casuistiek", Phase.CASUSOVERLEG, "", "schulden"): 50,
        ("huiselijk-geweld", Phase.TRIAGE, "", "huisvesting"): 30,
        ("huiselijk-geweld", Phase.TRIAGE, "", "schulden"): 60,
    }
    cells = cells_of(counts)
    table = suppress(cells, 10)
    hidden = {(c.theme, c.phase, c.bottleneck) for c in table.cells if c.suppressed}
    # The 3 shares theme and tag with the 25 (its smallest neighbour in both), so
    # swapping one case between them keeps every total: nothing else needs to go.
    assert hidden == {
        ("complexe-casuistiek", Phase.TRIAGE, "huisvesting"),
        ("complexe-casuistiek", Phase.CASUSOVERLEG, "huisvesting"),
    }
    assert not any(t.suppressed for t in table.totals)
    assert unprotected(cells, table) == set()
    check_shape(cells, table)


def test_small_totals_are_suppressed_and_protected() -> None:
    counts = {
        ("complexe-casuistiek", Phase.TRIAGE, "", "huisvesting"): 40,
        ("complexe-casuistiek", Phase.TRIAGE, "", "schulden"): 40,
        ("huiselijk-geweld", Phase.TRIAGE, "", "huisvesting"): 12,
        ("nazorg-ex-gedetineerden", Phase.TRIAGE, "", "schulden"): 30,
    }
    cells = cells_of(counts)
    table = suppress(cells, 15)
    assert totals(table, TotalKind.THEME)["huiselijk-geweld"] == (0, True)
    assert unprotected(cells, table) == set()
    check_shape(cells, table)


def test_k_one_and_zero_cells_and_an_empty_table() -> None:
    counts = {KEYS[0]: 1, KEYS[1]: 0, KEYS[2]: 7}
    table = suppress(cells_of(counts), 1)
    assert [(c.count, c.suppressed) for c in table.cells] == [(1, False), (7, False)]
    assert table.suppressed_count == 0
    empty = suppress([], 10)
    assert empty.cells == ()
    assert [(t.kind, t.count, t.suppressed) for t in empty.totals] == [(TotalKind.GRAND, 0, False)]


def test_a_realistic_table_is_protected_everywhere() -> None:
    rng = random.Random(7)
    cells = [
        SignalCount(t, p, o, b, rng.choice([0, 0, 1, 2, 4, 9, 11, 25, 80]))
        for t in THEMES
        for p, o in SUBCELLS
        for b in TAGS
    ]
    table = suppress(cells, 10)
    check_shape(cells, table)
    assert 0 < table.suppressed_count < len(table.cells) + len(table.totals)


def test_the_protection_check_catches_a_recoverable_cell() -> None:
    # Only the primary cell hidden: theme total minus the other cell gives it away.
    cells = cells_of({KEYS[0]: 3, KEYS[1]: 40})
    naive = SuppressedTable(
        10,
        (
            PublishedCell(*KEYS[0], 0, True),
            PublishedCell(*KEYS[1], 40, False),
        ),
        (
            PublishedTotal(TotalKind.THEME, KEYS[0][0], 43, False),
            PublishedTotal(TotalKind.GRAND, ALL, 43, False),
        ),
    )
    assert unprotected(cells, naive) == {f"cell {KEYS[0]}"}
    # Two hidden cells of 1 under a published total of 2 are both pinned at 1.
    ones = cells_of({KEYS[0]: 1, KEYS[1]: 1})
    pinned = SuppressedTable(
        2,
        tuple(PublishedCell(c.theme, c.phase, c.outcome, c.bottleneck, 0, True) for c in ones),
        (
            PublishedTotal(TotalKind.THEME, KEYS[0][0], 2, False),
            PublishedTotal(TotalKind.BOTTLENECK, KEYS[0][3], 2, False),
            PublishedTotal(TotalKind.GRAND, ALL, 2, False),
        ),
    )
    assert unprotected(ones, pinned) == {f"cell {KEYS[0]}", f"cell {KEYS[1]}"}


@pytest.mark.parametrize("k", [0, -3, True, 2.5, "10"])
def test_bad_k_is_refused(k: object) -> None:
    with pytest.raises(SuppressionError, match="k must be an integer of at least 1"):
        suppress([], k)  # type: ignore[arg-type]


def test_malformed_tables_are_refused() -> None:
    cell = SignalCount(*KEYS[0], 3)
    with pytest.raises(SuppressionError, match="occurs twice"):
        suppress([cell, cell])
    with pytest.raises(SuppressionError, match="reserved value"):
        suppress([SignalCount(ALL, Phase.TRIAGE, "", "", 3)])
    with pytest.raises(SuppressionError, match="non-negative integers"):
        suppress([SignalCount(*KEYS[0], -1)])


@pytest.mark.slow
@settings(max_examples=5000, deadline=None)
@given(tables(14), st.integers(1, 15))
def test_many_generated_tables_are_protected(cells: list[SignalCount], k: int) -> None:
    table = suppress(cells, k)
    check_shape(cells, table)
    assert unprotected(cells, table) == set()
