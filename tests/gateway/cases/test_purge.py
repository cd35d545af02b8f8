"""Retention: after the purge no fact or link about the subject remains, only the skeleton."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa
from schakel.v1 import common_pb2

from gateway.cases import CaseInputError, CaseRegistry, GroundKind, Hit, IllegalTransitionError
from policy.vocabulary import Phase
from tests.support.cases import GGZ, POLITIE, SetClock, referral


def every_value(engine: sa.Engine) -> list[tuple[str, str, object]]:
    """(table, column, value) of every non-null cell of every table in the database."""
    reflected = sa.MetaData()
    reflected.reflect(engine)
    cells = []
    with engine.connect() as conn:
        for table in reflected.sorted_tables:
            for row in conn.execute(sa.select(table)):
                for column, value in row._mapping.items():
                    if value is not None:
                        cells.append((table.name, column, value))
    return cells


def cells_containing(engine: sa.Engine, needles: list[bytes]) -> list[tuple[str, str]]:
    found = []
    for table, column, value in every_value(engine):
        raw = bytes(value) if isinstance(value, bytes | memoryview) else str(value).encode()
        if any(n in raw or n.hex().encode() in raw for n in needles):
            found.append((table, column))
    return found


def test_purge_leaves_no_pseudonym_fact_or_link(
    registry: CaseRegistry, engine: sa.Engine, clock: SetClock
) -> None:
    ref = referral("purge-key")
    case_id = registry.refer(ref).case.id
    registry.record_hit(case_id, Hit("ggz-parnassia", "zvh-haaglanden", "crisis@ggz.example"))
    registry.record_ground(
        case_id,
        kind=GroundKind.CONSENT,
        category="zorg.in_zorg",
        provider_org_id="ggz-parnassia",
        evidence_ref="TOESTEMMING-2026-9",
    )
    registry.start_triage(case_id)
    registry.accept(case_id, reason_code="ok", participants=[POLITIE, GGZ])
    fact = common_pb2.Fact(category="sociaal.huisvesting")
    fact.fields["status"].text = "dakloos"
    registry.store_fact(case_id, fact, provider=POLITIE)
    registry.set_bottlenecks(case_id, ["huisvesting"])
    with engine.connect() as conn:
        sealed = conn.execute(sa.text("SELECT sealed FROM case_facts")).scalar_one()
    # A second case that stays open must be untouched by the purge.
    other = referral("other-key", external_ref="POL-2026-000999")
    other_id = registry.refer(other).case.id

    subject = bytes.fromhex(ref.subject)
    links = [
        subject,
        bytes(sealed),
        b"POL-2026-000123",
        b"purge-key",
        b"TOESTEMMING-2026-9",
        b"crisis@ggz.example",
    ]
    # The scan works: before the purge it finds every link.
    found = cells_containing(engine, links)
    assert ("cases", "subject_pseudonym") in found and ("case_facts", "sealed") in found
    assert len(found) >= 6

    clock.advance(days=3)
    registry.close(case_id, outcome="doelen-bereikt", retention_days=30)
    assert registry.purge_expired(clock.now + timedelta(days=29)) == []
    assert registry.purge_expired(clock.now + timedelta(days=30)) == [case_id]
    assert registry.purge_expired(clock.now + timedelta(days=31)) == []

    assert cells_containing(engine, links) == []
    for name in ("case_facts", "case_participants", "case_grounds", "case_hits"):
        with engine.connect() as conn:
            query = sa.text(f"SELECT count(*) FROM {name} WHERE case_id = :c")
            assert conn.execute(query, {"c": case_id}).scalar_one() == 0, name
    skeleton = registry.get(case_id)
    assert (skeleton.theme, skeleton.phase, skeleton.outcome) == (
        "complexe-casuistiek",
        Phase.AFSCHALING,
        "doelen-bereikt",
    )
    assert skeleton.bottlenecks == ("huisvesting",) and skeleton.triage_reason == "ok"
    assert skeleton.subject == "" and skeleton.external_ref == "" and skeleton.criteria == ()
    assert skeleton.referrer_org_id == "" and skeleton.participants == ()
    assert skeleton.closed_at == clock.now and skeleton.purged_at == clock.now + timedelta(days=30)
    assert registry.facts(case_id) == []
    assert registry.get(other_id).subject == other.subject
    with pytest.raises(IllegalTransitionError, match="retention period ended and it was purged"):
        registry.set_bottlenecks(case_id, ["schulden"])
    assert registry.get(case_id).bottlenecks == ("huisvesting",)


def test_a_rejected_case_is_purged_too(registry: CaseRegistry, clock: SetClock) -> None:
    ref = referral()
    case_id = registry.refer(ref).case.id
    registry.start_triage(case_id)
    registry.reject(case_id, reason_code="buiten-doelgroep", retention_days=0)
    assert registry.purge_expired() == [case_id]
    assert registry.get(case_id).subject == ""
    # The key was purged with the rest, so the same referral later opens a new case.
    again = registry.refer(ref)
    assert again.created and again.case.id != case_id


def test_a_fact_goes_when_its_own_retention_ends_and_grounds_with_the_case(
    registry: CaseRegistry, engine: sa.Engine, clock: SetClock
) -> None:
    """A fact a rule lets the regie keep for fewer days than the case goes first (set clock)."""
    case_id = registry.refer(referral("fact-retention")).case.id
    registry.start_triage(case_id)
    registry.accept(case_id, reason_code="ok", participants=[POLITIE, GGZ])
    registry.record_ground(
        case_id,
        kind=GroundKind.CONSENT,
        category="zorg.in_zorg",
        provider_org_id="ggz-parnassia",
        evidence_ref="TOESTEMMING-2026-9",
    )
    release = common_pb2.Fact(category="detentie")
    release.fields["status"].text = "gedetineerd"
    short = registry.store_fact(case_id, release, provider=POLITIE, retention_days=365)
    housing = common_pb2.Fact(category="sociaal.huisvesting")
    housing.fields["status"].text = "dakloos"
    long = registry.store_fact(case_id, housing, provider=POLITIE)
    with pytest.raises(CaseInputError, match="retention_days"):
        registry.store_fact(case_id, housing, provider=POLITIE, retention_days=-1)

    clock.advance(days=400)  # an open case keeps its facts, however long it runs
    assert registry.purge_expired() == []
    assert {s.id for s in registry.facts(case_id)} == {short, long}
    closed = registry.close(case_id, outcome="doelen-bereikt", retention_days=730).closed_at
    assert closed == clock.now

    clock.advance(days=364)
    assert registry.purge_expired() == []
    assert {s.id for s in registry.facts(case_id)} == {short, long}
    clock.advance(days=1)
    assert registry.purge_expired() == []
    assert [s.id for s in registry.facts(case_id)] == [long]
    assert len(registry.get(case_id).grounds) == 1

    clock.advance(days=730 - 365)
    assert registry.purge_expired() == [case_id]
    assert registry.facts(case_id) == [] and registry.get(case_id).grounds == ()
    with engine.connect() as conn:
        for name in ("case_facts", "case_grounds"):
            count = conn.execute(sa.text(f"SELECT count(*) FROM {name}")).scalar_one()
            assert count == 0, name
