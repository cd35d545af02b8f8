"""The case list: the cases of this node in brief, filtered by phase, theme, age and tag.

A line of the list names no subject, referrer or fact: the case id, its
activity, theme, phase, dates and bottleneck tags, all of which the
skeleton of a purged case keeps too.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from gateway.cases.base import CaseStoreBase
from gateway.cases.model import check_code
from gateway.cases.tables import case_bottlenecks, cases
from policy.vocabulary import Phase

MAX_LISTED = 500
"""At most this many cases, newest first: a list is for finding a case, not for export."""


@dataclass(frozen=True)
class CaseFilter:
    """Which cases to list; None does not filter."""

    phase: Phase | None = None
    theme: str | None = None
    opened_before: datetime | None = None
    """Only cases opened before this moment (the age filter)."""
    tag: str | None = None
    limit: int = MAX_LISTED


@dataclass(frozen=True)
class CaseLine:
    """One case in brief."""

    id: str
    activity: str
    theme: str
    phase: Phase
    opened_at: datetime
    closed_at: datetime | None
    bottlenecks: tuple[str, ...]


class CaseListing(CaseStoreBase):
    """Lists the cases of the registry."""

    def list_cases(self, where: CaseFilter) -> list[CaseLine]:
        """The cases ``where`` admits, newest first, at most ``where.limit``."""
        if where.theme is not None:
            check_code(where.theme, "theme")
        if where.tag is not None:
            check_code(where.tag, "bottleneck tag")
        query = sa.select(
            cases.c.id,
            cases.c.activity,
            cases.c.theme,
            cases.c.phase,
            cases.c.opened_at,
            cases.c.closed_at,
        )
        if where.phase is not None:
            query = query.where(cases.c.phase == where.phase.value)
        if where.theme is not None:
            query = query.where(cases.c.theme == where.theme)
        if where.opened_before is not None:
            query = query.where(cases.c.opened_at < where.opened_before)
        if where.tag is not None:
            tagged = sa.select(case_bottlenecks.c.case_id).where(
                case_bottlenecks.c.tag == where.tag
            )
            query = query.where(cases.c.id.in_(tagged))
        query = query.order_by(cases.c.opened_at.desc()).limit(min(where.limit, MAX_LISTED))
        with self._engine.connect() as conn:
            rows = conn.execute(query).all()
            ids = [row.id for row in rows]
            tags: dict[str, list[str]] = {}
            if ids:
                for case_id, tag in conn.execute(
                    sa.select(case_bottlenecks.c.case_id, case_bottlenecks.c.tag)
                    .where(case_bottlenecks.c.case_id.in_(ids))
                    .order_by(case_bottlenecks.c.tag)
                ):
                    tags.setdefault(case_id, []).append(tag)
        return [
            CaseLine(
                id=row.id,
                activity=row.activity,
                theme=row.theme,
                phase=Phase(row.phase),
                opened_at=row.opened_at,
                closed_at=row.closed_at,
                bottlenecks=tuple(tags.get(row.id, ())),
            )
            for row in rows
        ]
