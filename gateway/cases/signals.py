"""Aggregate case counts for national signalling, without suppression.

Small-cell and complementary suppression belong to the signals service; this
module only counts. No cell carries a case id, a pseudonym or a date.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from gateway.cases.errors import CaseInputError
from gateway.cases.tables import case_bottlenecks, cases
from policy.vocabulary import Phase


@dataclass(frozen=True)
class SignalCount:
    """The number of cases in one (theme, phase, outcome, bottleneck tag) cell."""

    theme: str
    phase: Phase
    """The phase at the end of the period."""
    outcome: str
    """The outcome if closed before the end of the period, else empty."""
    bottleneck: str
    """One bottleneck tag, or empty for cases without one."""
    count: int


def count_cases(engine: Engine, period_start: datetime, period_end: datetime) -> list[SignalCount]:
    """Counts per theme, phase, outcome and bottleneck tag of cases active in the period.

    Cells come sorted by theme, phase in process order, outcome and tag.

    A case counts when it was opened before ``period_end`` and not closed
    before ``period_start``; purged skeletons count like any other case. Its
    phase and outcome are those at the end of the period. A case with several
    bottleneck tags counts once in the cell of each tag, so cells of one theme
    may add up to more than its number of cases; a case without tags counts
    in the cell with an empty tag.
    """
    with engine.connect() as conn:
        return _cells(conn, _per_case(period_start, period_end))


def _cells(conn: sa.Connection, per_case: sa.Subquery) -> list[SignalCount]:
    query = sa.select(
        per_case.c.theme,
        per_case.c.phase,
        per_case.c.outcome,
        per_case.c.bottleneck,
        sa.func.count().label("n"),
    ).group_by(per_case.c.theme, per_case.c.phase, per_case.c.outcome, per_case.c.bottleneck)
    rows = conn.execute(query).all()
    order = list(Phase)
    counts = [SignalCount(r.theme, Phase(r.phase), r.outcome, r.bottleneck, r.n) for r in rows]
    return sorted(counts, key=lambda c: (c.theme, order.index(c.phase), c.outcome, c.bottleneck))


CASES = "*"
"""The key of the count of all cases in :func:`count_distinct_cases`."""


def count_with_cases(
    engine: Engine, period_start: datetime, period_end: datetime
) -> tuple[list[SignalCount], dict[tuple[str, str], int]]:
    """The cells of :func:`count_cases`, and distinct cases per theme, phase and outcome.

    Both come from one read. The second's keys are ``("theme", code)``,
    ``("phase", name)``, ``("outcome", code)`` (``""`` while open) and
    ``("all", CASES)``; a case counts once whatever its tags. Values without
    cases are absent.
    """
    per_case = _per_case(period_start, period_end)
    found: dict[tuple[str, str], int] = {}
    with engine.connect() as conn:
        cells = _cells(conn, per_case)
        for dimension in ("theme", "phase", "outcome"):
            column = per_case.c[dimension]
            query = sa.select(column, sa.func.count(sa.distinct(per_case.c.id))).group_by(column)
            for key, n in conn.execute(query).all():
                found[(dimension, str(key))] = int(n)
        total = conn.execute(sa.select(sa.func.count(sa.distinct(per_case.c.id)))).scalar_one()
    if total:
        found[("all", CASES)] = int(total)
    return cells, found


def _per_case(period_start: datetime, period_end: datetime) -> sa.Subquery:
    """One row per case active in the period and tag it carries (one row if none)."""
    for name, value in (("period_start", period_start), ("period_end", period_end)):
        if not isinstance(value, datetime) or value.tzinfo is None:
            raise CaseInputError(f"{name} must be a timezone-aware datetime")
    if period_start >= period_end:
        raise CaseInputError("period_start must be before period_end")
    end = sa.literal(period_end, cases.c.opened_at.type)
    # A NULL timestamp compares as unknown, so a step not yet taken never matches.
    closed = cases.c.closed_at < end
    phase = sa.case(
        (closed, Phase.AFSCHALING.value),
        (cases.c.accepted_at < end, Phase.CASUSOVERLEG.value),
        (cases.c.triage_at < end, Phase.TRIAGE.value),
        else_=Phase.AANMELDING.value,
    )
    # The per-case rows go through a subquery so that GROUP BY names plain
    # columns: PostgreSQL cannot tell that two CASE expressions with separately
    # bound parameters are the same expression.
    return (
        sa.select(
            cases.c.id.label("id"),
            cases.c.theme.label("theme"),
            phase.label("phase"),
            sa.case((closed, cases.c.outcome), else_="").label("outcome"),
            sa.func.coalesce(case_bottlenecks.c.tag, "").label("bottleneck"),
        )
        .select_from(cases.outerjoin(case_bottlenecks, case_bottlenecks.c.case_id == cases.c.id))
        .where(
            cases.c.opened_at < end,
            sa.or_(
                cases.c.closed_at.is_(None),
                cases.c.closed_at >= sa.literal(period_start, cases.c.opened_at.type),
            ),
        )
        .subquery()
    )
