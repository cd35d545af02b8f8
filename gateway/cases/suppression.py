"""Small-cell and complementary suppression of a signals table.

The table has one cell per (theme, phase, outcome, bottleneck tag) with a
non-zero count, and three kinds of published totals: per theme, per tag and
the grand total. Every total is the plain sum of the cells it covers, so a
case with several tags (which counts once in the cell of each tag) counts
several times in the totals too: totals count case-tag entries, not cases.
That keeps every published number a linear function of the cells, which is
what the protection argument below needs.

The table is a circulation on a small graph: an arc ``S -> theme`` carries
the theme total, ``theme -> tag`` one arc per cell, ``tag -> Z`` the tag
total and ``Z -> S`` the grand total; flow is conserved at every node
exactly when every total is the sum of its cells. A published number fixes
its arc. An attacker who reads the answer knows each suppressed number is an
integer of at least 1 (cells with count 0 are not listed, so a listed cell is
non-zero; a total covers at least one listed cell).

A suppressed number is protected when it can take at least two values
consistent with everything published. Because the constraint matrix of a
circulation is totally unimodular, that holds exactly when the arc lies on a
cycle of the residual graph: suppressed arcs can always grow by one, and can
shrink by one when their value is at least 2. :func:`suppress` checks this
for every suppressed number and suppresses more until it holds.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from gateway.cases import SignalCount
from policy.vocabulary import Phase

DEFAULT_K = 10
ALL = "*"
"""Stands for "every value" in the dimensions a total adds up; no code can be "*"."""


class SuppressionError(ValueError):
    """The table or the threshold is malformed."""


class TotalKind(StrEnum):
    """Which published total an entry is."""

    THEME = "theme"
    BOTTLENECK = "bottleneck"
    GRAND = "grand"


@dataclass(frozen=True)
class PublishedCell:
    """One cell as published: its count, or suppressed (count 0 then)."""

    theme: str
    phase: Phase
    outcome: str
    bottleneck: str
    count: int
    suppressed: bool


@dataclass(frozen=True)
class PublishedTotal:
    """One total as published: per theme, per bottleneck tag, or the grand total.

    ``key`` is the theme or the tag; ``ALL`` for the grand total.
    """

    kind: TotalKind
    key: str
    count: int
    suppressed: bool


@dataclass(frozen=True)
class SuppressedTable:
    """The cells and totals of one table after suppression, in a stable order."""

    k: int
    cells: tuple[PublishedCell, ...]
    totals: tuple[PublishedTotal, ...]

    @property
    def suppressed_count(self) -> int:
        """How many numbers (cells and totals) are suppressed."""
        return sum(c.suppressed for c in self.cells) + sum(t.suppressed for t in self.totals)


_S, _Z = ("S", ""), ("Z", "")
_Node = tuple[str, str]


@dataclass
class _Arc:
    tail: _Node
    head: _Node
    value: int
    suppressed: bool = False


class _Graph:
    """The circulation of a table, with the suppression state of each arc."""

    def __init__(self, cells: list[SignalCount]) -> None:
        self.cells = cells
        themes = sorted({c.theme for c in cells})
        tags = sorted({c.bottleneck for c in cells})
        self.arcs: list[_Arc] = [_Arc(("R", c.theme), ("C", c.bottleneck), c.count) for c in cells]
        self.theme_arcs = {t: len(self.arcs) + i for i, t in enumerate(themes)}
        self.arcs += [
            _Arc(_S, ("R", t), sum(c.count for c in cells if c.theme == t)) for t in themes
        ]
        self.tag_arcs = {b: len(self.arcs) + i for i, b in enumerate(tags)}
        self.arcs += [
            _Arc(("C", b), _Z, sum(c.count for c in cells if c.bottleneck == b)) for b in tags
        ]
        self.grand_arc = len(self.arcs)
        self.arcs.append(_Arc(_Z, _S, sum(c.count for c in cells)))
        self.incident: dict[_Node, list[int]] = {}
        for i, arc in enumerate(self.arcs):
            self.incident.setdefault(arc.tail, []).append(i)
            self.incident.setdefault(arc.head, []).append(i)

    def _smallest_open(self, candidates: Iterable[int]) -> int | None:
        """The published arc with the smallest value; ties go to the earliest arc."""
        open_arcs = [i for i in candidates if not self.arcs[i].suppressed]
        return min(open_arcs, key=lambda i: (self.arcs[i].value, i), default=None)

    def enforce_pairs(self) -> None:
        """Until no node has exactly one suppressed arc, suppress one more of its arcs.

        A node with exactly one suppressed arc gives it away by conservation:
        it is the published total minus the published cells. The complement
        is the smallest published arc parallel to the suppressed one (a cell
        of the same theme and tag, which hides the pair from both totals at
        once), else the smallest published arc of the node.
        """
        queue = deque(self.incident)
        while queue:
            node = queue.popleft()
            arcs = self.incident[node]
            hidden = [i for i in arcs if self.arcs[i].suppressed]
            if len(hidden) != 1:
                continue
            lone = self.arcs[hidden[0]]
            parallel = [
                i for i in arcs if (self.arcs[i].tail, self.arcs[i].head) == (lone.tail, lone.head)
            ]
            pick = self._smallest_open(parallel)
            if pick is None:
                pick = self._smallest_open(arcs)
            # Every node has at least two arcs, so one is still published.
            assert pick is not None
            self.arcs[pick].suppressed = True
            queue.extend((self.arcs[pick].tail, self.arcs[pick].head, node))

    def _reaches(self, start: _Node, goal: _Node, skip: int) -> bool:
        """Whether the residual graph leads from ``start`` to ``goal`` without arc ``skip``."""
        seen = {start}
        queue = deque([start])
        while queue:
            node = queue.popleft()
            if node == goal:
                return True
            for i in self.incident[node]:
                arc = self.arcs[i]
                if i == skip or not arc.suppressed:
                    continue
                if arc.tail == node:
                    nxt = arc.head
                elif arc.value >= 2:
                    nxt = arc.tail
                else:
                    continue
                if nxt not in seen:
                    seen.add(nxt)
                    queue.append(nxt)
        return False

    def can_change(self, i: int) -> bool:
        """Whether suppressed arc ``i`` can take another value consistent with what is published."""
        arc = self.arcs[i]
        if self._reaches(arc.head, arc.tail, i):
            return True
        return arc.value >= 2 and self._reaches(arc.tail, arc.head, i)

    def pinned(self) -> int | None:
        """A suppressed arc whose value the published numbers determine, or None."""
        for i, arc in enumerate(self.arcs):
            if arc.suppressed and not self.can_change(i):
                return i
        return None

    def unpin(self, i: int) -> None:
        """Suppress one more arc so that arc ``i`` can change, preferring small nearby arcs."""
        arc = self.arcs[i]
        near = self.incident[arc.tail] + self.incident[arc.head]
        for pool in (near, range(len(self.arcs))):
            ordered = sorted(
                (j for j in set(pool) if not self.arcs[j].suppressed),
                key=lambda j: (self.arcs[j].value, j),
            )
            for j in ordered:
                self.arcs[j].suppressed = True
                if self.can_change(i):
                    return
                self.arcs[j].suppressed = False
        # No single arc frees it: suppress the smallest nearby one and look again.
        pick = self._smallest_open(near)
        if pick is None:
            pick = self._smallest_open(range(len(self.arcs)))
        # A pinned arc implies a published arc exists: with every arc suppressed, each one lies
        # on the cycle S -> theme -> tag -> Z -> S and can grow.
        assert pick is not None
        self.arcs[pick].suppressed = True


def suppress(counts: Iterable[SignalCount], k: int = DEFAULT_K) -> SuppressedTable:
    """Suppress ``counts`` so that no published number is below ``k`` and none reveals one.

    Primary suppression: every cell and every total below ``k``. Cells with
    count 0 are not sensitive (no case, no person) and are simply not listed.
    Complementary suppression: until no theme, tag or total ties exactly one
    suppressed number to published ones, the smallest published number there
    is suppressed too; then, as long as some suppressed number is still
    determined by the published ones (also using that each is at least 1),
    one more nearby number is suppressed. ``k = 1`` suppresses nothing.
    """
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise SuppressionError(f"k must be an integer of at least 1, not {k!r}")
    cells: list[SignalCount] = []
    seen: set[tuple[str, Phase, str, str]] = set()
    for cell in counts:
        key = (cell.theme, cell.phase, cell.outcome, cell.bottleneck)
        if ALL in key:
            raise SuppressionError(f"a cell may not use the reserved value {ALL!r}")
        if key in seen:
            raise SuppressionError(
                f"cell theme={cell.theme!r} phase={cell.phase} outcome={cell.outcome!r} "
                f"bottleneck={cell.bottleneck!r} occurs twice"
            )
        if isinstance(cell.count, bool) or not isinstance(cell.count, int) or cell.count < 0:
            raise SuppressionError(f"cell counts must be non-negative integers, not {cell.count!r}")
        seen.add(key)
        if cell.count:
            cells.append(cell)
    if not cells:
        return SuppressedTable(k, (), (PublishedTotal(TotalKind.GRAND, ALL, 0, False),))
    graph = _Graph(cells)
    for arc in graph.arcs:
        arc.suppressed = arc.value < k
    graph.enforce_pairs()
    while (pinned := graph.pinned()) is not None:
        graph.unpin(pinned)
        graph.enforce_pairs()
    return _table(graph, k)


def _table(graph: _Graph, k: int) -> SuppressedTable:
    published = [
        PublishedCell(
            c.theme,
            c.phase,
            c.outcome,
            c.bottleneck,
            0 if arc.suppressed else arc.value,
            arc.suppressed,
        )
        for c, arc in zip(graph.cells, graph.arcs[: len(graph.cells)], strict=True)
    ]
    totals: list[PublishedTotal] = []
    for kind, arcs in ((TotalKind.THEME, graph.theme_arcs), (TotalKind.BOTTLENECK, graph.tag_arcs)):
        for key, i in arcs.items():
            arc = graph.arcs[i]
            totals.append(
                PublishedTotal(kind, key, 0 if arc.suppressed else arc.value, arc.suppressed)
            )
    grand = graph.arcs[graph.grand_arc]
    totals.append(
        PublishedTotal(
            TotalKind.GRAND, ALL, 0 if grand.suppressed else grand.value, grand.suppressed
        )
    )
    return SuppressedTable(k, tuple(published), tuple(totals))
