"""Retention: when a closed case's personal data must go, and the purge that removes it.

A closed case keeps its links (subject, participants, grounds, hits) and its
facts until its ``retain_until``; a fact whose releasing rule lets the regie
keep it for fewer days (``case_facts.retention_days``) goes that many days
after the case closed, before the rest.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import sqlalchemy as sa

from gateway.cases.base import CaseStoreBase
from gateway.cases.errors import CaseInputError
from gateway.cases.tables import (
    case_facts,
    case_grounds,
    case_hits,
    case_participants,
    case_transfers,
    cases,
)

MAX_RETENTION_DAYS = 100 * 366


def check_retention_days(days: int) -> int:
    """``days`` if it is a whole number of days from 0 to :data:`MAX_RETENTION_DAYS`."""
    if not isinstance(days, int) or isinstance(days, bool) or not 0 <= days <= MAX_RETENTION_DAYS:
        raise CaseInputError(
            f"retention_days must be a whole number from 0 to {MAX_RETENTION_DAYS}"
        )
    return days


def retain_until(closed_at: datetime, days: int) -> datetime:
    """The end of retention for a case closed at ``closed_at`` kept ``days`` days."""
    return closed_at + timedelta(days=check_retention_days(days))


class RetentionStore(CaseStoreBase):
    """The registry's retention purge."""

    def purge_expired(self, now: datetime | None = None) -> list[str]:
        """Purge every closed case whose retention ended at or before ``now``; return their ids.

        First every fact whose own retention (days after its case closed) has
        ended is deleted, also in a case whose retention runs on.

        Facts, participants, grounds, hits and a hand-over's record are deleted; the subject
        pseudonym, referrer, idempotency key, reference, criteria and reason
        codes are cleared. The skeleton stays for signalling: theme, phase,
        outcome, triage reason, bottleneck tags and dates. Each case is purged
        in its own transaction, so an interrupted purge leaves whole cases.
        """
        at = now if now is not None else self._now()
        if at.tzinfo is None:
            raise CaseInputError("purge time must be timezone-aware")
        self._purge_expired_facts(at)
        due = cases.c.retain_until <= at
        with self._engine.connect() as conn:
            ids = list(
                conn.execute(
                    sa.select(cases.c.id)
                    .where(due, cases.c.purged_at.is_(None))
                    .order_by(cases.c.id)
                ).scalars()
            )
        purged = []
        for case_id in ids:
            with self._engine.begin() as conn:
                claimed = conn.execute(
                    sa.update(cases)
                    .where(cases.c.id == case_id, due, cases.c.purged_at.is_(None))
                    .values(
                        version=cases.c.version + 1,
                        referrer_org_id=None,
                        referrer_org_type=None,
                        idempotency_key=None,
                        external_ref=None,
                        subject_pseudonym=None,
                        criteria=None,
                        reason_codes=None,
                        purged_at=at,
                    )
                ).rowcount
                if claimed != 1:
                    continue
                for table in (
                    case_facts,
                    case_participants,
                    case_grounds,
                    case_hits,
                    case_transfers,
                ):
                    conn.execute(sa.delete(table).where(table.c.case_id == case_id))
            purged.append(case_id)
        return purged

    def _purge_expired_facts(self, at: datetime) -> None:
        """Delete each fact kept for fewer days than its case, once those days have passed."""
        with self._engine.connect() as conn:
            rows = conn.execute(
                sa.select(case_facts.c.id, case_facts.c.retention_days, cases.c.closed_at)
                .join(cases, cases.c.id == case_facts.c.case_id)
                .where(case_facts.c.retention_days.is_not(None), cases.c.closed_at.is_not(None))
            ).all()
        expired = [
            row.id for row in rows if row.closed_at + timedelta(days=row.retention_days) <= at
        ]
        if expired:
            with self._engine.begin() as conn:
                conn.execute(sa.delete(case_facts).where(case_facts.c.id.in_(expired)))
