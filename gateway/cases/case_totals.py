"""Distinct-case totals beside a suppressed signals table: how many cases, not tag entries.

The table (:mod:`gateway.cases.suppression`) counts a case once per tag, so
its totals are case-tag entries. A stuurgroep wants cases: how many per
theme, per phase, per outcome and in all. These totals are protected as a
table of their own, with the same rules as the cells:

- primary: a total below ``k`` is suppressed;
- complementary: the themes and the phases each split all cases, and the
  outcomes split the cases in afschaling (open cases have no outcome and
  are not listed: they are the other phases). A single suppressed total
  would follow from its siblings and the total they split, so the
  smallest published sibling is suppressed too (or, when there is none,
  the total they split);
- tied to the table: where a theme's cases could equal its entries (no case
  of it has two tags), publishing the first would reveal the second, so a
  theme total the table suppresses is suppressed here, and likewise the
  count of all cases with the table's grand total.

Per tag, cases and entries are the same number (a case has each tag at
most once), so the tags' totals are the table's tag totals as published.

What this does not exclude: differencing the phase or outcome totals
against the cells of the table. The circulation argument of the table does
not extend to counts that are not sums of its cells; that is why these
totals stay one-dimensional (no theme by phase, no phase by outcome).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from gateway.cases.signals import CASES
from gateway.cases.suppression import ALL, SuppressedTable, TotalKind
from policy.vocabulary import Phase


class Dimension(StrEnum):
    """What a distinct-case total counts by."""

    ALL = "all"
    THEME = "theme"
    PHASE = "phase"
    OUTCOME = "outcome"
    BOTTLENECK = "bottleneck"


_EVERYTHING = (Dimension.ALL, CASES)
_CLOSED = (Dimension.PHASE, Phase.AFSCHALING.value)
SPLITS = {Dimension.THEME: _EVERYTHING, Dimension.PHASE: _EVERYTHING, Dimension.OUTCOME: _CLOSED}
"""Each dimension's totals add up to this total."""


@dataclass(frozen=True)
class CaseTotal:
    """One distinct-case total as published: its count, or suppressed (count 0 then)."""

    dimension: Dimension
    key: str
    count: int
    suppressed: bool


def suppress_case_totals(
    counts: dict[tuple[str, str], int], table: SuppressedTable
) -> tuple[CaseTotal, ...]:
    """The distinct-case totals of ``counts`` (as from ``count_with_cases``), suppressed.

    Ordered: all cases, then themes, phases, outcomes and tags by key.
    """
    hidden_totals = {(t.kind, t.key) for t in table.totals if t.suppressed}
    values: dict[tuple[Dimension, str], int] = {
        (Dimension(dimension), key): n
        for (dimension, key), n in counts.items()
        if n > 0 and (dimension, key) != (Dimension.OUTCOME, "")
    }
    hidden: set[tuple[Dimension, str]] = set()
    for (dimension, key), n in values.items():
        if (
            n < table.k
            or (dimension is Dimension.THEME and (TotalKind.THEME, key) in hidden_totals)
            or (dimension is Dimension.ALL and (TotalKind.GRAND, ALL) in hidden_totals)
        ):
            hidden.add((dimension, key))
    changed = True
    while changed:
        changed = False
        for dimension, parent in SPLITS.items():
            if parent in hidden or parent not in values:
                continue
            keys = [key for d, key in values if d is dimension]
            lone = [key for key in keys if (dimension, key) in hidden]
            if len(lone) != 1:
                continue
            shown = sorted((values[(dimension, key)], key) for key in keys if key not in lone)
            hidden.add((dimension, shown[0][1]) if shown else parent)
            changed = True
    totals = [
        CaseTotal(d, key, 0 if (d, key) in hidden else n, (d, key) in hidden)
        for (d, key), n in values.items()
    ]
    totals += [
        CaseTotal(Dimension.BOTTLENECK, t.key, t.count, t.suppressed)
        for t in table.totals
        if t.kind is TotalKind.BOTTLENECK
    ]
    order = list(Dimension)
    return tuple(sorted(totals, key=lambda t: (order.index(t.dimension), t.key)))
