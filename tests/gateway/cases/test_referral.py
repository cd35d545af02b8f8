"""Idempotent referral: a retry returns the first case, also in a race; a changed one is refused."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from threading import Barrier

import pytest
import sqlalchemy as sa

from gateway.cases import (
    CaseInputError,
    CaseRegistry,
    FactVault,
    ReferralConflictError,
    ReferralResult,
    tables,
)
from gateway.rpc.status import status_of
from policy.vocabulary import Phase
from tests.support.cases import SetClock, pseudonym, referral


def count_cases(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.text("SELECT count(*) FROM cases")).scalar_one())


def test_retry_returns_the_first_case(registry: CaseRegistry, engine: sa.Engine) -> None:
    ref = referral("key-1")
    first = registry.refer(ref)
    again = registry.refer(ref)
    assert first.created and not again.created
    assert again.case == first.case
    assert count_cases(engine) == 1


def test_retry_with_lists_instead_of_tuples_is_the_same_referral(registry: CaseRegistry) -> None:
    ref = referral("key-1")
    first = registry.refer(ref)
    again = registry.refer(
        replace(ref, criteria=list(ref.criteria), reason_codes=list(ref.reason_codes))  # type: ignore[arg-type]
    )
    assert first.created and not again.created and again.case.id == first.case.id


def test_retry_after_progress_returns_the_case_as_it_is_now(registry: CaseRegistry) -> None:
    ref = referral("key-1")
    case_id = registry.refer(ref).case.id
    registry.start_triage(case_id)
    again = registry.refer(ref)
    assert not again.created and again.case.id == case_id and again.case.phase is Phase.TRIAGE


def test_same_key_from_another_referrer_is_another_case(registry: CaseRegistry) -> None:
    ref = referral("shared-key")
    other = replace(ref, referrer_org_id="reclassering-nl", referrer_org_type="reclassering")
    a, b = registry.refer(ref), registry.refer(other)
    assert a.created and b.created and a.case.id != b.case.id


CHANGED: list[tuple[dict[str, object], str]] = [
    ({"theme": "nazorg-ex-gedetineerden"}, "theme"),
    ({"subject": pseudonym()}, "subject"),
    ({"criteria": ("meervoudig",)}, "criteria"),
    ({"external_ref": "POL-OTHER"}, "external_ref"),
]


def test_changed_retry_is_refused(registry: CaseRegistry, engine: sa.Engine) -> None:
    ref = referral("key-1")
    first = registry.refer(ref).case
    for change, named in CHANGED:
        with pytest.raises(ReferralConflictError) as err:
            registry.refer(replace(ref, **change))  # type: ignore[arg-type]
        message = str(err.value)
        assert f"different {named}" in message and first.id in message
        assert ref.subject not in message and "POL-" not in message
        assert status_of(err.value).name == "ALREADY_EXISTS"
        assert count_cases(engine) == 1 and registry.get(first.id) == first


def test_racing_retries_create_one_case(
    engine: sa.Engine, vault: FactVault, clock: SetClock
) -> None:
    """Separate threads, each with its own connection, race on one key; the constraint decides."""
    threads = 8
    ref = referral("race-key")
    barrier = Barrier(threads)

    def submit(_: int) -> ReferralResult:
        # One registry per thread, as separate request handlers would have.
        own = CaseRegistry(engine, vault, clock=clock)
        barrier.wait()
        return own.refer(ref)

    for _round in range(3):
        with ThreadPoolExecutor(threads) as pool:
            results = list(pool.map(submit, range(threads)))
        assert sum(r.created for r in results) == 1
        assert len({r.case.id for r in results}) == 1
        ref = referral(f"race-key-{_round}")
    assert count_cases(engine) == 3


def test_racing_changed_retry_is_refused_not_merged(
    engine: sa.Engine, vault: FactVault, clock: SetClock
) -> None:
    ref = referral("race-key")
    variants = [ref, replace(ref, theme="radicalisering")] * 3
    barrier = Barrier(len(variants))

    def submit(r: object) -> str:
        own = CaseRegistry(engine, vault, clock=clock)
        barrier.wait()
        try:
            return own.refer(r).case.theme  # type: ignore[arg-type]
        except ReferralConflictError:
            return "refused"

    with ThreadPoolExecutor(len(variants)) as pool:
        outcomes = list(pool.map(submit, variants))
    winner = next(o for o in outcomes if o != "refused")
    assert outcomes.count(winner) == 3 and outcomes.count("refused") == 3
    assert count_cases(engine) == 1


BAD: list[tuple[dict[str, object], str]] = [
    ({"subject": "12345678"}, "subject must be a node-domain pseudonym"),
    ({"subject": "A" * 64}, "subject must be a node-domain pseudonym"),
    ({"theme": "Complexe casuistiek"}, "theme must be a code"),
    ({"criteria": ("ok", "Vrije tekst")}, "each of criteria must be a code"),
    ({"reason_codes": ("a", "a")}, "reason_codes lists a code more than once"),
    ({"idempotency_key": ""}, "idempotency_key must be"),
    ({"idempotency_key": "x" * 129}, "idempotency_key must be"),
    ({"referrer_org_type": "bank"}, "referrer org type is unknown"),
    ({"referrer_org_id": "Politie NL"}, "referrer org id must be"),
    ({"external_ref": "jan de vries"}, "external_ref must be"),
]


def test_bad_referral_is_refused(registry: CaseRegistry, engine: sa.Engine) -> None:
    for change, message in BAD:
        bad = replace(referral(), **change)  # type: ignore[arg-type]
        with pytest.raises(CaseInputError, match=message) as err:
            registry.refer(bad)
        # The refusal never echoes what was given: it may be personal data.
        for value in change.values():
            for part in value if isinstance(value, tuple) else (value,):
                if len(str(part)) > 2:
                    assert str(part) not in str(err.value)
    assert count_cases(engine) == 0


def test_retry_that_loses_the_insert_race_returns_the_winner(
    registry: CaseRegistry, engine: sa.Engine, clock: SetClock
) -> None:
    """Deterministic race: the winner's insert is uncommitted while the retry looks and inserts."""
    ref = referral("held-key")
    winner_id = "a" * 32
    with ThreadPoolExecutor(1) as pool, engine.connect() as conn:
        conn.begin()
        conn.execute(
            sa.insert(tables.cases).values(
                id=winner_id,
                version=1,
                activity=ref.activity,
                theme=ref.theme,
                phase="aanmelding",
                referrer_org_id=ref.referrer_org_id,
                referrer_org_type=ref.referrer_org_type,
                idempotency_key=ref.idempotency_key,
                external_ref=ref.external_ref,
                subject_pseudonym=ref.subject,
                criteria=list(ref.criteria),
                reason_codes=list(ref.reason_codes),
                triage_reason="",
                outcome="",
                opened_at=clock.now,
            )
        )
        # The retry cannot see the uncommitted row, so it inserts and waits on
        # the winner's lock (PostgreSQL: the unique index; SQLite: the writer).
        retry = pool.submit(registry.refer, ref)
        time.sleep(0.3)
        assert not retry.done()
        conn.commit()
        result = retry.result(timeout=15)
    assert not result.created and result.case.id == winner_id
    assert count_cases(engine) == 1
