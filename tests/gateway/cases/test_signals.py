"""Aggregate counts per theme, phase at the end of the period, outcome and bottleneck tag."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from gateway.cases import CaseInputError, CaseRegistry, SignalCount, count_cases
from policy.vocabulary import Phase
from tests.support.cases import POLITIE, SetClock, referral

MAR = datetime(2026, 3, 1, tzinfo=UTC)
APR = datetime(2026, 4, 1, tzinfo=UTC)
CC, NAZORG = "complexe-casuistiek", "nazorg-ex-gedetineerden"


def at(clock: SetClock, day: datetime, hours: int = 0) -> None:
    clock.now = day + timedelta(hours=hours)


def test_counts_for_a_period(registry: CaseRegistry, engine: sa.Engine, clock: SetClock) -> None:
    n = iter(range(100))

    def new(theme: str, when: datetime) -> str:
        at(clock, when)
        return registry.refer(referral(f"k{next(n)}", theme=theme)).case.id

    # Closed before the period: not counted.
    old = new(CC, datetime(2026, 2, 10, tzinfo=UTC))
    registry.start_triage(old)
    registry.reject(old, reason_code="nee", retention_days=0)
    # Opened after the period: not counted.
    new(CC, datetime(2026, 4, 2, tzinfo=UTC))
    # Three fresh referrals, still in aanmelding.
    for _ in range(3):
        new(CC, datetime(2026, 3, 5, tzinfo=UTC))
    # In triage at the end of the period, accepted only after it; two tags.
    triaged = new(CC, datetime(2026, 3, 5, tzinfo=UTC))
    at(clock, datetime(2026, 3, 6, tzinfo=UTC))
    registry.start_triage(triaged)
    at(clock, datetime(2026, 4, 3, tzinfo=UTC))
    registry.accept(triaged, reason_code="ok", participants=[POLITIE])
    registry.set_bottlenecks(triaged, ["huisvesting", "schulden"])
    # Opened before the period, closed inside it, then purged: still counted.
    closed = new(NAZORG, datetime(2026, 2, 1, tzinfo=UTC))
    registry.start_triage(closed)
    registry.accept(closed, reason_code="ok", participants=[POLITIE])
    registry.set_bottlenecks(closed, ["huisvesting"])
    at(clock, datetime(2026, 3, 20, tzinfo=UTC))
    registry.close(closed, outcome="doelen-bereikt", retention_days=1)
    assert set(registry.purge_expired(datetime(2026, 3, 25, tzinfo=UTC))) == {old, closed}
    # In casusoverleg at the end of the period, closed only after it.
    running = new(NAZORG, datetime(2026, 3, 10, tzinfo=UTC))
    registry.start_triage(running)
    registry.accept(running, reason_code="ok", participants=[POLITIE])
    at(clock, datetime(2026, 4, 5, tzinfo=UTC))
    registry.close(running, outcome="doorverwezen", retention_days=30)
    # Rejected inside the period.
    rejected = new(NAZORG, datetime(2026, 3, 12, tzinfo=UTC))
    at(clock, datetime(2026, 3, 12, 5, tzinfo=UTC))
    registry.start_triage(rejected)
    registry.reject(rejected, reason_code="buiten-doelgroep", retention_days=30)

    assert count_cases(engine, MAR, APR) == [
        SignalCount(CC, Phase.AANMELDING, "", "", 3),
        SignalCount(CC, Phase.TRIAGE, "", "huisvesting", 1),
        SignalCount(CC, Phase.TRIAGE, "", "schulden", 1),
        SignalCount(NAZORG, Phase.CASUSOVERLEG, "", "", 1),
        SignalCount(NAZORG, Phase.AFSCHALING, "doelen-bereikt", "huisvesting", 1),
        SignalCount(NAZORG, Phase.AFSCHALING, "niet-ontvankelijk", "", 1),
    ]
    # A later period sees the same cases further along.
    later = count_cases(engine, APR, datetime(2026, 5, 1, tzinfo=UTC))
    assert SignalCount(CC, Phase.CASUSOVERLEG, "", "schulden", 1) in later
    assert SignalCount(NAZORG, Phase.AFSCHALING, "doorverwezen", "", 1) in later
    assert all(c.outcome != "doelen-bereikt" for c in later)
    empty = (datetime(2025, 1, 1, tzinfo=UTC), datetime(2025, 2, 1, tzinfo=UTC))
    assert count_cases(engine, *empty) == []


def test_bad_periods_are_refused(engine: sa.Engine) -> None:
    with pytest.raises(CaseInputError, match="period_start must be before period_end"):
        count_cases(engine, APR, MAR)
    with pytest.raises(CaseInputError, match="timezone-aware"):
        count_cases(engine, datetime(2026, 3, 1), APR)
