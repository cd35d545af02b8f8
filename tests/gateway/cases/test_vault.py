"""The fact vault: facts are AES-256-GCM ciphertext at rest, bound to case, category and row."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import sqlalchemy as sa
from schakel.v1 import common_pb2

from gateway.cases import CaseInputError, CaseRegistry, FactIntegrityError, FactVault
from policy.vocabulary import Phase
from tests.support.cases import GGZ, POLITIE, SetClock, referral


def open_case(registry: CaseRegistry, key: str = "k") -> str:
    case_id = registry.refer(referral(key)).case.id
    registry.start_triage(case_id)
    registry.accept(case_id, reason_code="ok", participants=[POLITIE, GGZ])
    return case_id


def housing_fact(status: str = "dakloos-sinds-maart") -> common_pb2.Fact:
    fact = common_pb2.Fact(category="sociaal.huisvesting")
    fact.fields["status"].text = status
    fact.fields["sinds"].date.year = 2026
    fact.fields["sinds"].date.month = 3
    fact.fields["schuld_eur"].number = 123456789
    return fact


def raw_rows(engine: sa.Engine) -> list[sa.Row[tuple[object, ...]]]:
    with engine.connect() as conn:
        return list(conn.execute(sa.text("SELECT * FROM case_facts ORDER BY id")))


def test_facts_round_trip(registry: CaseRegistry, clock: SetClock) -> None:
    case_id = open_case(registry)
    care = common_pb2.Fact(category="zorg.in_zorg")
    care.fields["in_zorg"].flag = True
    first = registry.store_fact(case_id, housing_fact(), provider=POLITIE)
    clock.advance(seconds=1)
    second = registry.store_fact(case_id, care, provider=GGZ)
    stored = registry.facts(case_id)
    assert [s.id for s in stored] == [first, second]
    assert stored[0].fact == housing_fact() and stored[1].fact == care
    assert (stored[1].provider_node_id, stored[1].provider_org_id) == (GGZ.node_id, GGZ.org_id)
    assert [s.id for s in registry.facts(case_id, "zorg.in_zorg")] == [second]
    assert registry.facts(case_id, "detentie") == []


def test_facts_are_encrypted_at_rest(registry: CaseRegistry, engine: sa.Engine) -> None:
    case_id = open_case(registry)
    fact = housing_fact()
    plaintext = fact.SerializeToString(deterministic=True)
    registry.store_fact(case_id, fact, provider=POLITIE)
    registry.store_fact(case_id, fact, provider=POLITIE)
    rows = raw_rows(engine)
    assert len(rows) == 2
    for row in rows:
        blob = b"".join(v if isinstance(v, bytes) else str(v).encode() for v in row)
        assert b"dakloos-sinds-maart" not in blob and plaintext not in blob
        assert (123456789).to_bytes(4, "little") not in blob
    # A fresh nonce per row: the same fact never gives the same ciphertext.
    assert rows[0].sealed != rows[1].sealed


def tamper(engine: sa.Engine, fact_id: str, **values: object) -> None:
    with engine.begin() as conn:
        sets = ", ".join(f"{k} = :{k}" for k in values)
        statement = sa.text(f"UPDATE case_facts SET {sets} WHERE id = :id")
        conn.execute(statement, {**values, "id": fact_id})


def test_a_flipped_bit_fails_with_a_clear_error(registry: CaseRegistry, engine: sa.Engine) -> None:
    case_id = open_case(registry)
    fact_id = registry.store_fact(case_id, housing_fact(), provider=POLITIE)
    sealed = bytearray(raw_rows(engine)[0].sealed)
    sealed[20] ^= 1
    tamper(engine, fact_id, sealed=bytes(sealed))
    with pytest.raises(FactIntegrityError, match=f"fact {fact_id} of case {case_id} failed auth"):
        registry.facts(case_id)
    tamper(engine, fact_id, sealed=b"short")
    with pytest.raises(FactIntegrityError, match="truncated"):
        registry.facts(case_id)


def test_rows_cannot_be_swapped_or_moved(registry: CaseRegistry, engine: sa.Engine) -> None:
    case_a, case_b = open_case(registry, "a"), open_case(registry, "b")
    care = common_pb2.Fact(category="zorg.in_zorg")
    care.fields["in_zorg"].flag = True
    fact_a = registry.store_fact(case_a, housing_fact(), provider=POLITIE)
    fact_b = registry.store_fact(case_b, housing_fact("eigen-woning"), provider=POLITIE)
    fact_c = registry.store_fact(case_a, care, provider=GGZ)
    sealed = {r.id: r.sealed for r in raw_rows(engine)}

    # The ciphertext of case b's fact, pasted into case a's row.
    tamper(engine, fact_a, sealed=sealed[fact_b])
    with pytest.raises(FactIntegrityError, match=f"fact {fact_a}"):
        registry.facts(case_a)
    tamper(engine, fact_a, sealed=sealed[fact_a])
    assert len(registry.facts(case_a)) == 2

    # A whole row moved to another case.
    tamper(engine, fact_a, case_id=case_b)
    with pytest.raises(FactIntegrityError):
        registry.facts(case_b)
    tamper(engine, fact_a, case_id=case_a)

    # A health fact relabelled as a less sensitive category.
    tamper(engine, fact_c, category="sociaal.huisvesting")
    with pytest.raises(FactIntegrityError):
        registry.facts(case_a, "sociaal.huisvesting")
    tamper(engine, fact_c, category="zorg.in_zorg")
    assert [s.fact for s in registry.facts(case_a, "zorg.in_zorg")] == [care]


def test_another_key_cannot_open(engine: sa.Engine, registry: CaseRegistry) -> None:
    case_id = open_case(registry)
    registry.store_fact(case_id, housing_fact(), provider=POLITIE)
    other = CaseRegistry(engine, FactVault(os.urandom(32)))
    with pytest.raises(FactIntegrityError, match=r"sealed under key .* this vault holds key"):
        other.facts(case_id)


def test_vault_rejects_a_wrong_key_id_even_if_the_row_claims_ours(
    engine: sa.Engine, registry: CaseRegistry, vault: FactVault
) -> None:
    case_id = open_case(registry)
    fact_id = registry.store_fact(case_id, housing_fact(), provider=POLITIE)
    other = FactVault(os.urandom(32))
    tamper(engine, fact_id, key_id=other.key_id)
    with pytest.raises(FactIntegrityError, match="failed authentication"):
        CaseRegistry(engine, other).facts(case_id)


def test_bad_facts_are_refused(registry: CaseRegistry, engine: sa.Engine) -> None:
    case_id = open_case(registry)
    with pytest.raises(CaseInputError, match="fact category must be a code"):
        registry.store_fact(case_id, common_pb2.Fact(), provider=POLITIE)
    huge = housing_fact()
    huge.fields["x"].text = "a" * 70_000
    with pytest.raises(CaseInputError, match="larger than"):
        registry.store_fact(case_id, huge, provider=POLITIE)
    with pytest.raises(CaseInputError, match=r"schakel\.v1\.Fact"):
        registry.store_fact(case_id, b"bytes", provider=POLITIE)  # type: ignore[arg-type]
    assert raw_rows(engine) == []
    assert registry.get(case_id).phase is Phase.CASUSOVERLEG


def test_key_files(tmp_path: Path) -> None:
    path = tmp_path / "facts.key"
    FactVault.generate_key_file(path)
    assert path.stat().st_mode & 0o777 == 0o600
    vault = FactVault.from_key_file(path)
    sealed = vault.seal("c" * 32, "detentie", "f" * 32, b"fact")
    assert FactVault.from_key_file(path).open("c" * 32, "detentie", "f" * 32, sealed) == b"fact"
    raw = tmp_path / "raw.key"
    raw.write_bytes(bytes(range(32)))
    assert FactVault.from_key_file(raw).key_id == FactVault(bytes(range(32))).key_id
    with pytest.raises(FileExistsError):
        FactVault.generate_key_file(path)
    (tmp_path / "short.key").write_bytes(b"0" * 31)
    with pytest.raises(CaseInputError, match="expected 32 raw bytes or 64 hex digits"):
        FactVault.from_key_file(tmp_path / "short.key")
    with pytest.raises(CaseInputError, match="cannot read"):
        FactVault.from_key_file(tmp_path / "missing.key")
    with pytest.raises(CaseInputError, match="exactly 32 bytes"):
        FactVault(b"short")


def test_associated_data_separates_fields() -> None:
    vault = FactVault(os.urandom(32))
    sealed = vault.seal("ab", "c", "f", b"x")
    with pytest.raises(FactIntegrityError):
        vault.open("a", "bc", "f", sealed)
