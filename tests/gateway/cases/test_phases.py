"""The transition table is the national process, and the registry does exactly what it says.

Every action is tried from every phase against the registry (SQLite and
PostgreSQL): where the table allows it, it succeeds and leaves the case in the
table's target phase; everywhere else it raises IllegalTransitionError and
changes nothing.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import sqlalchemy as sa
from schakel.v1 import common_pb2

from gateway.cases import (
    OPENING_PHASE,
    TRANSITIONS,
    Action,
    CaseNotFoundError,
    CaseRegistry,
    GroundKind,
    Hit,
    IllegalTransitionError,
    Transfer,
)
from policy.vocabulary import OPEN_PHASES, Phase
from tests.support.cases import GEMEENTE, GGZ, case_in, case_version

A, T, C, AF = Phase.AANMELDING, Phase.TRIAGE, Phase.CASUSOVERLEG, Phase.AFSCHALING

# The rules written out by hand, from the national ZVH process: the table must say the same.
EXPECTED: dict[Action, tuple[frozenset[Phase], Phase | None]] = {
    Action.START_TRIAGE: (frozenset({A}), T),
    # Decided only in triage: the procesregisseur moves a referral there first.
    Action.ACCEPT: (frozenset({T}), C),
    Action.REJECT: (frozenset({T}), AF),
    Action.CLOSE: (frozenset({C}), AF),
    Action.HAND_OVER: (frozenset({A, T, C}), AF),
    Action.ADD_PARTICIPANT: (frozenset({C}), None),
    Action.RECORD_GROUND: (frozenset({A, T, C}), None),
    Action.RECORD_HIT: (frozenset({A, T, C}), None),
    Action.STORE_FACT: (frozenset({C}), None),
    Action.SET_BOTTLENECKS: (frozenset({A, T, C, AF}), None),
    Action.WITHDRAW: (frozenset({A}), None),
}

CALLS: dict[Action, Callable[[CaseRegistry, str], object]] = {
    Action.START_TRIAGE: lambda r, c: r.start_triage(c),
    Action.ACCEPT: lambda r, c: r.accept(c, reason_code="criteria-ok", participants=[GEMEENTE]),
    Action.REJECT: lambda r, c: r.reject(c, reason_code="buiten-doelgroep", retention_days=30),
    Action.CLOSE: lambda r, c: r.close(c, outcome="doelen-bereikt", retention_days=30),
    Action.HAND_OVER: lambda r, c: r.hand_over(
        c,
        Transfer("zvh-rotterdam", "move-1", "betrokkene-verhuisd", "ab" * 16),
        outcome="overgedragen-andere-zvh",
        retention_days=30,
    ),
    Action.ADD_PARTICIPANT: lambda r, c: r.add_participant(c, GEMEENTE),
    Action.RECORD_GROUND: lambda r, c: r.record_ground(
        c,
        kind=GroundKind.CONSENT,
        category="zorg.in_zorg",
        provider_org_id="ggz-parnassia",
        evidence_ref="TOESTEMMING-77",
    ),
    Action.RECORD_HIT: lambda r, c: r.record_hit(
        c, Hit("ggz-parnassia", "zvh-haaglanden", "regie@zvh.example")
    ),
    Action.STORE_FACT: lambda r, c: r.store_fact(
        c, common_pb2.Fact(category="sociaal.huisvesting"), provider=GGZ
    ),
    Action.SET_BOTTLENECKS: lambda r, c: r.set_bottlenecks(c, ["huisvesting"]),
    Action.WITHDRAW: lambda r, c: r.withdraw(c),
}


def test_the_table_is_the_national_process() -> None:
    assert OPENING_PHASE is Phase.AANMELDING
    assert set(TRANSITIONS) == set(Action) == set(EXPECTED) == set(CALLS)
    for action, (allowed, to) in EXPECTED.items():
        assert (TRANSITIONS[action].allowed, TRANSITIONS[action].to) == (allowed, to), action
    # Only transitions out of an open phase close or move a case; nothing reopens one.
    for move in TRANSITIONS.values():
        assert move.to is None or move.allowed <= OPEN_PHASES


@pytest.mark.parametrize("phase", list(Phase))
@pytest.mark.parametrize("action", list(Action))
def test_every_action_from_every_phase(
    registry: CaseRegistry, engine: sa.Engine, action: Action, phase: Phase
) -> None:
    case_id = case_in(registry, phase)
    before, version = registry.get(case_id), case_version(engine, case_id)
    move = TRANSITIONS[action]
    if phase not in move.allowed:
        with pytest.raises(IllegalTransitionError):
            CALLS[action](registry, case_id)
        assert registry.get(case_id) == before and case_version(engine, case_id) == version
        return
    CALLS[action](registry, case_id)
    if action is Action.WITHDRAW:
        with pytest.raises(CaseNotFoundError):
            registry.get(case_id)
        return
    assert registry.get(case_id).phase is (move.to or phase)
    assert case_version(engine, case_id) == version + 1
