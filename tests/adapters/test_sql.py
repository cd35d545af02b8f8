"""The SQL adapter on a simulated police database, on SQLite and PostgreSQL."""

from __future__ import annotations

import dataclasses
import json
import random
from pathlib import Path

import pytest
import sqlalchemy as sa
import structlog
import yaml

from adapters.index import PseudonymIndex
from adapters.mapping import MappingError
from adapters.sql import CategoryMapping, SqlAdapter, SqlMapping
from gateway.dev.fakedata import fake_bsns
from policy.pseudonyms import DomainKey, FederationKeys
from tests.support.fakedata import (
    POLICE_MAPPING,
    TEAMS,
    PoliceData,
    create_police_db,
    invalid_bsn,
    police_data,
)
from tests.support.partners import POLICE, local_pseudonymiser, pseudonym_of

ANTECEDENTEN = "justitie.antecedenten"
RISICO = "veiligheid.risico"


@pytest.fixture
def police(db_url: str) -> tuple[sa.Engine, PoliceData]:
    engine = sa.create_engine(db_url)
    data = police_data()
    create_police_db(engine, data)
    return engine, data


async def _adapter(
    engine: sa.Engine, federation: FederationKeys, keys: DomainKey
) -> tuple[SqlAdapter, PseudonymIndex]:
    index = PseudonymIndex(engine)
    index.create()
    adapter = SqlAdapter(engine, SqlMapping.from_dict(yaml.safe_load(POLICE_MAPPING)), index)
    adapter.check()
    report = await index.sync(adapter.subjects(), local_pseudonymiser(federation, POLICE), keys)
    assert report.rejected == {}
    return adapter, index


async def test_answers_hit_and_facts_from_the_police_database(
    police: tuple[sa.Engine, PoliceData], federation: FederationKeys, police_keys: DomainKey
) -> None:
    engine, data = police
    adapter, index = await _adapter(engine, federation, police_keys)
    assert index.count() == len(data.persons)
    with_record = next(p for p in data.persons if data.expected_antecedents(p))
    bsn, _, team = data.persons[with_record]
    hexa = pseudonym_of(federation, POLICE, bsn)

    assert adapter.known(hexa) == TEAMS[team]
    facts = adapter.facts(hexa, [ANTECEDENTEN, "zorg.in_zorg"])
    got = {
        f.fields["feit"].text: (f.fields["aantal"].number, f.fields["laatste"].date) for f in facts
    }
    expected = data.expected_antecedents(with_record)
    assert set(got) == set(expected)
    for code, (count, latest) in expected.items():
        assert got[code][0] == count
        assert (got[code][1].year, got[code][1].month, got[code][1].day) == (
            latest.year,
            latest.month,
            latest.day,
        )
    assert {f.category for f in facts} == {ANTECEDENTEN}

    flagged, (gun, level) = next(iter(data.flags.items()))
    risk = adapter.facts(pseudonym_of(federation, POLICE, data.persons[flagged][0]), [RISICO])
    assert len(risk) == 1
    assert risk[0].fields["vuurwapen"].flag is gun
    assert risk[0].fields["niveau"].text == level

    stranger = pseudonym_of(federation, POLICE, fake_bsns(1, seed=99)[0])
    assert adapter.known(stranger) is None
    assert adapter.facts(stranger, [ANTECEDENTEN, RISICO]) == []


async def test_the_index_holds_no_identifier(
    police: tuple[sa.Engine, PoliceData], federation: FederationKeys, police_keys: DomainKey
) -> None:
    engine, data = police
    _, index = await _adapter(engine, federation, police_keys)
    with engine.connect() as conn:
        dump = json.dumps([list(map(str, row)) for row in conn.execute(sa.select(index.table))])
    for bsn, name, _ in data.persons.values():
        assert bsn not in dump
        assert name not in dump
    # The other domain's pseudonym of the same person is not what the police index holds.
    some_bsn = next(iter(data.persons.values()))[0]
    assert pseudonym_of(federation, "ggz-rijnmond", some_bsn) not in dump
    assert pseudonym_of(federation, POLICE, some_bsn) in dump


async def test_sync_is_incremental_and_follows_deletions(
    police: tuple[sa.Engine, PoliceData], federation: FederationKeys, police_keys: DomainKey
) -> None:
    engine, data = police
    adapter, index = await _adapter(engine, federation, police_keys)
    pseudonymise = local_pseudonymiser(federation, POLICE)
    again = await index.sync(adapter.subjects(), pseudonymise, police_keys)
    assert (again.added, again.removed) == (0, 0)

    gone = max(data.persons)
    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM risico WHERE persoon_id = :p"), {"p": gone})
        conn.execute(sa.text("DELETE FROM antecedenten WHERE persoon_id = :p"), {"p": gone})
        conn.execute(sa.text("DELETE FROM personen WHERE persoon_id = :p"), {"p": gone})
    hexa = pseudonym_of(federation, POLICE, data.persons[gone][0])
    assert index.lookup(hexa) == (str(gone),)
    assert adapter.known(hexa) is None  # gone from the source before the index caught up
    after = await index.sync(adapter.subjects(), pseudonymise, police_keys)
    assert (after.added, after.removed) == (0, 1)
    assert index.lookup(hexa) == ()

    full = await index.sync(adapter.subjects(), pseudonymise, police_keys, full=True)
    assert full.added == len(data.persons) - 1
    assert index.count() == len(data.persons) - 1


async def test_a_record_with_an_invalid_bsn_is_rejected_without_naming_it(
    police: tuple[sa.Engine, PoliceData], federation: FederationKeys, police_keys: DomainKey
) -> None:
    engine, data = police
    bad = invalid_bsn(random.Random(3))
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO personen (persoon_id, bsn, naam, team) VALUES (9, :b, 'X', 'zuid')"
            ),
            {"b": bad},
        )
    index = PseudonymIndex(engine)
    index.create()
    adapter = SqlAdapter(engine, SqlMapping.from_dict(yaml.safe_load(POLICE_MAPPING)), index)
    with structlog.testing.capture_logs() as logs:
        report = await index.sync(
            adapter.subjects(), local_pseudonymiser(federation, POLICE), police_keys
        )
    assert list(report.rejected) == ["9"]
    assert "elfproef" in report.rejected["9"]
    assert bad not in json.dumps(report.rejected)
    assert bad not in repr(logs)
    assert report.added == len(data.persons)


async def test_a_value_outside_its_type_is_left_out_and_not_logged(
    police: tuple[sa.Engine, PoliceData], federation: FederationKeys, police_keys: DomainKey
) -> None:
    engine, data = police
    adapter, _ = await _adapter(engine, federation, police_keys)
    pid = next(iter(data.persons))
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO antecedenten (persoon_id, feitcode, pleegdatum) "
                "VALUES (:p, 'fraude met geheim', '2024-02-03')"
            ),
            {"p": pid},
        )
    with structlog.testing.capture_logs() as logs:
        facts = adapter.facts(
            pseudonym_of(federation, POLICE, data.persons[pid][0]), [ANTECEDENTEN]
        )
    odd = [f for f in facts if "feit" not in f.fields]
    assert len(odd) == 1
    assert odd[0].fields["aantal"].number == 1
    assert any(e.get("field") == "feit" and e.get("category") == ANTECEDENTEN for e in logs)
    assert "geheim" not in repr(logs)


def test_a_toml_mapping_loads_like_the_yaml_one(tmp_path: Path) -> None:
    toml = tmp_path / "politie.toml"
    toml.write_text(
        """
version = 1
id_type = "bsn"
[subjects]
table = "personen"
key_column = "persoon_id"
id_column = "bsn"
[contact]
handle = "zvh-loket@politie.example"
[categories."veiligheid.risico"]
query = "SELECT vuurwapen, niveau FROM risico WHERE persoon_id = :key"
[categories."veiligheid.risico".fields]
vuurwapen = { column = "vuurwapen", type = "bool" }
niveau = { column = "niveau", type = "code", values = ["laag", "midden", "hoog"] }
"""
    )
    mapping = SqlMapping.load(toml)
    yaml_mapping = SqlMapping.from_dict(yaml.safe_load(POLICE_MAPPING))
    assert mapping.categories[RISICO] == yaml_mapping.categories[RISICO]
    assert mapping.contact.handle == "zvh-loket@politie.example"


def _broken(path: str, value: object) -> dict[str, object]:
    doc: dict[str, object] = yaml.safe_load(POLICE_MAPPING)
    *parents, last = path.split("/")
    node: dict[str, object] = doc
    for p in parents:
        node = node[p]  # type: ignore[assignment]
    if value is None:
        del node[last]
    else:
        node[last] = value
    return doc


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("version", 2, "version: must be 1"),
        ("colour", "blue", "unknown key(s) ['colour']"),
        ("subjects/table", "personen; DROP TABLE x", "subjects.table"),
        ("subjects/id_column", None, "missing required key 'id_column'"),
        ("contact/column", None, "'query' and 'column' go together"),
        ("contact/handle", "bel de wijkagent", "e-mail address or a phone number"),
        (f"categories/{ANTECEDENTEN}/query", "DELETE FROM antecedenten WHERE x = :key", "SELECT"),
        (
            f"categories/{ANTECEDENTEN}/query",
            "SELECT 1 FROM a WHERE x = :key; DROP TABLE a",
            "single statement",
        ),
        (f"categories/{ANTECEDENTEN}/query", "SELECT feitcode FROM antecedenten", ":key"),
        (
            f"categories/{ANTECEDENTEN}/query",
            "WITH d AS (DELETE FROM antecedenten WHERE persoon_id = :key RETURNING feitcode)"
            " SELECT feitcode FROM d",
            "must only read: it holds DELETE",
        ),
        (
            f"categories/{ANTECEDENTEN}/query",
            "SELECT feitcode INTO kopie FROM antecedenten WHERE persoon_id = :key",
            "must only read: it holds INTO",
        ),
        (
            "contact/query",
            "SELECT mailbox FROM teams WHERE team = :key FOR UPDATE",
            "must only read: it holds LOCK",
        ),
        (
            f"categories/{ANTECEDENTEN}/query",
            "SELECT feitcode FROM antecedenten WHERE persoon_id = :key"
            " UNION SELECT nextval('s') FROM (UPDATE risico SET niveau = 'laag' RETURNING 1) u",
            "antecedenten.query",
        ),
        (
            f"categories/{ANTECEDENTEN}/query",
            "SELECT feitcode FROM a WHERE p = :key AND d > :since",
            "found ['key', 'since']",
        ),
        (f"categories/{ANTECEDENTEN}/fields/aantal/type", "money", "'money' is not one of"),
        (f"categories/{ANTECEDENTEN}/fields/aantal/values", ["1"], "only a code field"),
        (f"categories/{ANTECEDENTEN}/fields", {}, "at least one field"),
        ("categories/Justitie Antecedenten", {"query": "x", "fields": {}}, "not a fact category"),
    ],
)
def test_a_bad_mapping_is_refused_with_a_located_message(
    path: str, value: object, message: str
) -> None:
    with pytest.raises(MappingError) as err:
        SqlMapping.from_dict(_broken(path, value), "politie.yaml")
    assert message in str(err.value)
    assert str(err.value).startswith("politie.yaml")


def test_check_finds_what_the_database_lacks(police: tuple[sa.Engine, PoliceData]) -> None:
    engine, _ = police
    index = PseudonymIndex(engine)
    wrong_column = _broken(f"categories/{RISICO}/fields/niveau/column", "risico_niveau")
    with pytest.raises(
        MappingError,
        match=r"categories.veiligheid.risico: the query returns no column\(s\) \['risico_niveau'\]",
    ):
        SqlAdapter(engine, SqlMapping.from_dict(wrong_column), index).check()
    wrong_table = _broken("subjects/table", "mensen")
    with pytest.raises(MappingError, match="subjects: the database refused the query"):
        SqlAdapter(engine, SqlMapping.from_dict(wrong_table), index).check()


def _writing_query(engine: sa.Engine) -> str:
    """A category query that deletes what it reads: what the parser exists to refuse."""
    if engine.dialect.name == "sqlite":  # SQLite has no data-modifying WITH
        return (
            "DELETE FROM antecedenten WHERE persoon_id = :key"
            " RETURNING feitcode, 1 AS aantal, pleegdatum AS laatste"
        )
    return (
        "WITH d AS (DELETE FROM antecedenten WHERE persoon_id = :key RETURNING *)"
        " SELECT feitcode, COUNT(*) AS aantal, MAX(pleegdatum) AS laatste FROM d GROUP BY feitcode"
    )


async def test_a_query_the_parser_let_through_still_cannot_write(
    police: tuple[sa.Engine, PoliceData], federation: FederationKeys, police_keys: DomainKey
) -> None:
    engine, data = police
    adapter, index = await _adapter(engine, federation, police_keys)
    sneaky = dataclasses.replace(
        adapter.mapping.categories[ANTECEDENTEN], query=_writing_query(engine)
    )
    mapping = dataclasses.replace(adapter.mapping, categories={ANTECEDENTEN: sneaky})
    assert isinstance(sneaky, CategoryMapping)
    writer = SqlAdapter(engine, mapping, index)
    pid = next(p for p in data.persons if data.expected_antecedents(p))
    hexa = pseudonym_of(federation, POLICE, data.persons[pid][0])

    def rows() -> int:
        with engine.connect() as conn:
            return int(conn.execute(sa.text("SELECT COUNT(*) FROM antecedenten")).scalar_one())

    before = rows()
    with pytest.raises(sa.exc.DBAPIError, match=r"read-?only"):
        writer.facts(hexa, [ANTECEDENTEN])
    with pytest.raises(MappingError, match=r"refused the query: .*read-?only"):
        writer.check()
    assert rows() == before
    # The engine is shared with the pseudonym index: it can still write.
    full = await index.sync(
        adapter.subjects(), local_pseudonymiser(federation, POLICE), police_keys, full=True
    )
    assert full.added == len(data.persons)
    assert adapter.facts(hexa, [ANTECEDENTEN])
