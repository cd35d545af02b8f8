"""Hand-over (overdracht) in the registry: open case -> afschaling plus a transfer record."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa

from gateway.cases import CaseInputError, CaseRegistry, IllegalTransitionError, Transfer
from gateway.cases.tables import case_transfers
from policy.vocabulary import Phase
from tests.support.cases import POLITIE, START, SetClock, case_version, referral

OUTCOME = "overgedragen-andere-zvh"
REMOTE = "ab" * 16


def transfer(key: str = "move-1", **changes: object) -> Transfer:
    fields: dict[str, object] = {
        "node_id": "zvh-rotterdam",
        "idempotency_key": key,
        "reason_code": "betrokkene-verhuisd",
        "remote_case_id": REMOTE,
    }
    fields.update(changes)
    return Transfer(**fields)  # type: ignore[arg-type]


def in_phase(registry: CaseRegistry, phase: Phase) -> str:
    case_id = registry.refer(referral(f"key-{phase.value}")).case.id
    if phase is not Phase.AANMELDING:
        registry.start_triage(case_id)
    if phase is Phase.CASUSOVERLEG:
        registry.accept(case_id, reason_code="criteria-ok", participants=[POLITIE])
    return case_id


@pytest.mark.parametrize("phase", [Phase.AANMELDING, Phase.TRIAGE, Phase.CASUSOVERLEG])
def test_an_open_case_is_handed_over_and_closed_in_one_step(
    registry: CaseRegistry, phase: Phase
) -> None:
    case_id = in_phase(registry, phase)
    assert registry.transfer_of(case_id) is None
    case = registry.hand_over(case_id, transfer(), outcome=OUTCOME, retention_days=730)
    assert case.phase is Phase.AFSCHALING and case.outcome == OUTCOME
    assert case.closed_at == START
    assert case.retain_until == START + timedelta(days=730)
    assert registry.transfer_of(case_id) == transfer(transferred_at=START)


def test_a_closed_case_is_not_handed_over_and_nothing_changes(
    registry: CaseRegistry, engine: sa.Engine
) -> None:
    case_id = in_phase(registry, Phase.CASUSOVERLEG)
    registry.close(case_id, outcome="doelen-bereikt", retention_days=30)
    version = case_version(engine, case_id)
    with pytest.raises(IllegalTransitionError, match="phase afschaling, and hand over is allowed"):
        registry.hand_over(case_id, transfer(), outcome=OUTCOME, retention_days=730)
    assert case_version(engine, case_id) == version
    assert registry.get(case_id).outcome == "doelen-bereikt"
    assert registry.transfer_of(case_id) is None


def test_a_handed_over_case_is_not_handed_over_again(registry: CaseRegistry) -> None:
    case_id = in_phase(registry, Phase.TRIAGE)
    registry.hand_over(case_id, transfer(), outcome=OUTCOME, retention_days=30)
    with pytest.raises(IllegalTransitionError):
        registry.hand_over(
            case_id, transfer("move-2", node_id="zvh-utrecht"), outcome=OUTCOME, retention_days=30
        )
    assert registry.transfer_of(case_id) == transfer(transferred_at=START)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"node_id": "Zvh Rotterdam"}, "transfer node id"),
        ({"idempotency_key": "two words"}, "idempotency_key"),
        ({"reason_code": "Verhuisd naar Rotterdam"}, "reason_code"),
        ({"remote_case_id": "42"}, "case id"),
    ],
)
def test_bad_transfer_input_is_refused_before_anything_is_written(
    registry: CaseRegistry, engine: sa.Engine, changes: dict[str, object], message: str
) -> None:
    case_id = in_phase(registry, Phase.AANMELDING)
    version = case_version(engine, case_id)
    with pytest.raises(CaseInputError, match=message):
        registry.hand_over(case_id, transfer(**changes), outcome=OUTCOME, retention_days=30)
    assert case_version(engine, case_id) == version
    assert registry.get(case_id).phase is Phase.AANMELDING


def test_the_purge_removes_the_transfer_record(
    registry: CaseRegistry, engine: sa.Engine, clock: SetClock
) -> None:
    case_id = in_phase(registry, Phase.CASUSOVERLEG)
    registry.hand_over(case_id, transfer(), outcome=OUTCOME, retention_days=1)
    clock.advance(days=2)
    assert registry.purge_expired() == [case_id]
    assert registry.transfer_of(case_id) is None
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(case_transfers)).scalar() == 0
    assert registry.get(case_id).outcome == OUTCOME, "the skeleton keeps the outcome"
