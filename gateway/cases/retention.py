"""Retention: when a closed case's personal data must go, and the purge that removes it."""

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


def retain_until(closed_at: datetime, days: int) -> datetime:
    """The end of retention for a case closed at ``closed_at`` kept ``days`` days."""
    if not isinstance(days, int) or isinstance(days, bool) or not 0 <= days <= MAX_RETENTION_DAYS:
        raise CaseInputError(
            f"retention_days must be a whole number from 0 to {MAX_RETENTION_DAYS}"
        )
    return closed_at + timedelta(days=days)


class RetentionStore(CaseStoreBase):
    """The registry's retention purge."""

    def purge_expired(self, now: datetime | None = None) -> list[str]:
        """Purge every closed case whose retention ended at or before ``now``; return their ids.

        Facts, participants, grounds, hits and a hand-over's record are deleted; the subject
        pseudonym, referrer, idempotency key, reference, criteria and reason
        codes are cleared. The skeleton stays for signalling: theme, phase,
        outcome, triage reason, bottleneck tags and dates. Each case is purged
        in its own transaction, so an interrupted purge leaves whole cases.
        """
        at = now if now is not None else self._now()
        if at.tzinfo is None:
            raise CaseInputError("purge time must be timezone-aware")
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
