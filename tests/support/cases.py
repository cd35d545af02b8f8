"""Fixtures of the case registry tests: a migrated database, a vault, a settable clock."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from gateway.cases import CaseRegistry, FactVault, Participant, Referral
from gateway.storage import make_engine, migrate
from policy.vocabulary import Phase

START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


class SetClock:
    """A clock the test moves by hand, so retention and periods are exact."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now


@pytest.fixture
def engine(db_url: str) -> Iterator[sa.Engine]:
    eng = make_engine(db_url)
    migrate(eng)
    yield eng
    eng.dispose()


@pytest.fixture
def vault() -> FactVault:
    return FactVault(os.urandom(32))


@pytest.fixture
def clock() -> SetClock:
    return SetClock(START)


@pytest.fixture
def registry(engine: sa.Engine, vault: FactVault, clock: SetClock) -> CaseRegistry:
    return CaseRegistry(engine, vault, clock=clock)


def pseudonym() -> str:
    """A fresh node-domain pseudonym (the registry only sees its hex form)."""
    return os.urandom(32).hex()


def referral(key: str = "ref-1", **changes: object) -> Referral:
    fields: dict[str, object] = {
        "referrer_org_id": "politie-haaglanden",
        "referrer_org_type": "politie",
        "idempotency_key": key,
        "subject": pseudonym(),
        "activity": "zvh.complexe-casuistiek",
        "theme": "complexe-casuistiek",
        "criteria": ("meervoudig", "veiligheidsrisico"),
        "reason_codes": ("escalatie",),
        "external_ref": "POL-2026-000123",
    }
    fields.update(changes)
    return Referral(**fields)  # type: ignore[arg-type]


POLITIE = Participant("politie-haaglanden", "politie", "zvh-haaglanden")
GGZ = Participant("ggz-parnassia", "ggz", "zvh-haaglanden")
GEMEENTE = Participant("gemeente-den-haag", "gemeente", "zvh-haaglanden")


def case_version(engine: sa.Engine, case_id: str) -> int:
    """The row version, which every committed mutation bumps."""
    with engine.connect() as conn:
        return int(
            conn.execute(
                sa.text("SELECT version FROM cases WHERE id = :id"), {"id": case_id}
            ).scalar_one()
        )


def case_in(registry: CaseRegistry, phase: Phase, key: str = "k") -> str:
    """A case brought to ``phase`` along the legal path (afschaling: rejected at triage)."""
    case_id = registry.refer(referral(key)).case.id
    if phase is not Phase.AANMELDING:
        registry.start_triage(case_id)
    if phase is Phase.CASUSOVERLEG:
        registry.accept(case_id, reason_code="criteria-ok", participants=[POLITIE, GGZ])
    if phase is Phase.AFSCHALING:
        registry.reject(case_id, reason_code="buiten-doelgroep", retention_days=30)
    assert registry.get(case_id).phase is phase
    return case_id
