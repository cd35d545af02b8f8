"""The case registry: referral, transitions, the fact vault, hit lookup, aggregates, purge.

Each mutation is one committed transaction, so on SQLite (synchronous=FULL)
the rates are bound by fsync. The baseline is a bare one-row INSERT in its
own transaction on the same engine: the ratio is what the registry's checks,
guard and read-back cost on top of the database's own commit.
"""

from __future__ import annotations

import os
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from itertools import count

import sqlalchemy as sa
from schakel.v1 import common_pb2

from gateway.cases import CaseRegistry, FactVault, Participant, Referral, count_cases
from gateway.cases.tables import cases
from gateway.storage import make_engine, migrate
from tests.bench.harness import Result, median_rate, median_seconds
from tests.support.databases import PG_ADMIN_URL, PG_PROBLEM

AREA = "cases"
OPS = 100
POPULATION = 5000
THEMES = ("complexe-casuistiek", "nazorg-ex-gedetineerden", "huiselijk-geweld")
GGZ = Participant("ggz-parnassia", "ggz", "zvh-haaglanden")


def _databases() -> Iterator[tuple[str, sa.Engine]]:
    with tempfile.TemporaryDirectory() as tmp:
        engine = make_engine(f"sqlite:///{tmp}/bench.db")
        migrate(engine)
        yield "sqlite", engine
        engine.dispose()
    if PG_PROBLEM is not None:
        return
    schema = f"bench_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(PG_ADMIN_URL)
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    try:
        engine = make_engine(f"{PG_ADMIN_URL}?options=-csearch_path%3D{schema}")
        migrate(engine)
        yield "postgresql", engine
        engine.dispose()
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def _fact() -> common_pb2.Fact:
    fact = common_pb2.Fact(category="sociaal.huisvesting")
    fact.fields["status"].text = "dakloos"
    fact.fields["sinds"].date.year = 2026
    fact.fields["schuld_eur"].number = 12000
    return fact


def _populate(engine: sa.Engine, n: int) -> None:
    """n cases written in bulk, a third of them closed, with tags."""
    start = datetime(2026, 1, 1, tzinfo=UTC)
    rows = []
    for i in range(n):
        closed = i % 3 == 0
        rows.append(
            {
                "id": uuid.uuid4().hex,
                "version": 1,
                "activity": "zvh.complexe-casuistiek",
                "theme": THEMES[i % 3],
                "phase": "afschaling" if closed else ("aanmelding", "casusoverleg")[i % 2],
                "referrer_org_id": "politie-haaglanden",
                "referrer_org_type": "politie",
                "idempotency_key": f"bulk-{i}",
                "external_ref": "",
                "subject_pseudonym": os.urandom(32).hex(),
                "criteria": [],
                "reason_codes": [],
                "triage_reason": "",
                "outcome": "doelen-bereikt" if closed else "",
                "opened_at": start + timedelta(hours=i),
                "accepted_at": start + timedelta(hours=i + 1) if i % 2 else None,
                "closed_at": start + timedelta(hours=i + 48) if closed else None,
                "retain_until": start + timedelta(hours=i + 48) if closed else None,
            }
        )
    with engine.begin() as conn:
        conn.execute(sa.insert(cases), rows)


def _bench(db: str, engine: sa.Engine) -> list[Result]:
    vault = FactVault(os.urandom(32))
    registry = CaseRegistry(engine, vault)
    scratch = sa.Table(
        "bench_scratch", sa.MetaData(), sa.Column("id", sa.String(32), primary_key=True)
    )
    scratch.create(engine)
    keys = count()
    base = f"{db}: bare INSERT transaction"

    def raw_inserts() -> None:
        for _ in range(OPS):
            with engine.begin() as conn:
                conn.execute(sa.insert(scratch).values(id=uuid.uuid4().hex))

    def referral() -> Referral:
        return Referral(
            "politie-haaglanden",
            "politie",
            f"bench-{next(keys)}",
            os.urandom(32).hex(),
            "zvh.complexe-casuistiek",
            "complexe-casuistiek",
            ("meervoudig",),
            ("escalatie",),
            "POL-1",
        )

    def refer() -> None:
        for _ in range(OPS):
            registry.refer(referral())

    fixed = referral()
    registry.refer(fixed)

    def retry() -> None:
        for _ in range(OPS):
            registry.refer(fixed)

    def triage() -> None:
        ids = [registry.refer(referral()).case.id for _ in range(OPS)]
        for case_id in ids:
            registry.start_triage(case_id)

    case_id = registry.refer(referral()).case.id
    registry.start_triage(case_id)
    registry.accept(case_id, reason_code="ok", participants=[GGZ])
    fact = _fact()

    def store() -> None:
        for _ in range(OPS):
            registry.store_fact(case_id, fact, provider=GGZ)

    results = [
        Result(AREA, base, median_rate(raw_inserts, OPS), "txn/s"),
        Result(AREA, f"{db}: referral (new case)", median_rate(refer, OPS), "ops/s", baseline=base),
        Result(AREA, f"{db}: referral retry", median_rate(retry, OPS), "ops/s", baseline=base),
    ]
    # triage() also refers OPS cases, so its time covers 2*OPS transactions.
    triage_time = median_seconds(triage, repeats=3)
    results.append(
        Result(
            AREA,
            f"{db}: referral + start_triage",
            2 * OPS / triage_time,
            "txn/s",
            baseline=base,
        )
    )
    results.append(
        Result(AREA, f"{db}: store_fact (sealed)", median_rate(store, OPS), "ops/s", baseline=base)
    )
    stored = len(registry.facts(case_id))
    results.append(
        Result(
            AREA,
            f"{db}: read+decrypt facts",
            median_rate(lambda: registry.facts(case_id), stored),
            "facts/s",
            notes=f"{stored} facts of one case per call",
        )
    )
    _populate(engine, POPULATION)
    subjects = [os.urandom(32).hex() for _ in range(OPS)]
    with engine.connect() as conn:
        known = list(conn.execute(sa.select(cases.c.subject_pseudonym).limit(OPS // 2)).scalars())
    probes = [s for s in known + subjects[: OPS - len(known)] if s]

    def lookups() -> None:
        for subject in probes:
            registry.active_hit(subject, contact_handle="regie@zvh.example")

    results.append(
        Result(
            AREA,
            f"{db}: active_hit lookup",
            median_rate(lookups, len(probes)),
            "ops/s",
            notes=f"{POPULATION}+ cases, half hits",
        )
    )
    period = (datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC))
    results.append(
        Result(
            AREA,
            f"{db}: count_cases",
            median_seconds(lambda: count_cases(engine, *period)) * 1000,
            "ms",
            notes=f"{POPULATION}+ cases",
        )
    )
    # A purge happens once per case, so it is timed once, not as a median.
    start = time.perf_counter()
    purged = len(registry.purge_expired(datetime(2027, 1, 1, tzinfo=UTC)))
    results.append(
        Result(
            AREA,
            f"{db}: purge_expired",
            purged / (time.perf_counter() - start),
            "cases/s",
            notes=f"{purged} cases, one transaction each",
        )
    )
    return results


def run() -> list[Result]:
    """Measure on SQLite, and on PostgreSQL when the test server answers."""
    vault = FactVault(os.urandom(32))
    plaintext = _fact().SerializeToString()
    results = [
        Result(
            AREA,
            "vault seal (AES-256-GCM, in memory)",
            median_rate(
                lambda: [vault.seal("c" * 32, "x", str(i), plaintext) for i in range(10_000)],
                10_000,
            ),
            "ops/s",
        )
    ]
    for db, engine in _databases():
        results.extend(_bench(db, engine))
    return results
