"""The file-drop adapter on simulated municipality exports (housing CSV, debts JSON lines)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import grpc
import pytest
import sqlalchemy as sa
import structlog
import yaml

from adapters.filedrop import PROCESSED, QUARANTINE, DropSchema, FileDropAdapter
from adapters.index import Pseudonymiser
from adapters.mapping import MappingError
from adapters.sdk import PartnerClient, PartnerRpcError, RetryPolicy
from gateway.dev.fakedata import fake_bsns
from policy.pseudonyms import DomainKey, FederationKeys
from tests.support.fakedata import (
    MUNICIPALITY_SCHEMA,
    MunicipalityExports,
    write_municipality_exports,
)
from tests.support.partners import Pki, local_pseudonymiser, pseudonym_of

GEMEENTE = "gemeente-rotterdam"
HOUSING = "sociaal.huisvesting"
DEBTS = "sociaal.inkomen_schulden"


@pytest.fixture
def keys(federation: FederationKeys) -> DomainKey:
    return federation.domain_key_material(GEMEENTE)


@pytest.fixture
def pseudonymise(federation: FederationKeys) -> Pseudonymiser:
    return local_pseudonymiser(federation, GEMEENTE)


@pytest.fixture
def drop(tmp_path: Path) -> Path:
    path = tmp_path / "drop"
    path.mkdir()
    return path


@pytest.fixture
def adapter(db_url: str, drop: Path) -> FileDropAdapter:
    """The adapter with its store on SQLite (its default) and on PostgreSQL."""
    engine = sa.create_engine(db_url)
    fd = FileDropAdapter(drop, DropSchema.from_dict(yaml.safe_load(MUNICIPALITY_SCHEMA)), engine)
    fd.create()
    return fd


async def test_good_rows_are_processed_and_bad_rows_quarantined_with_their_reason(
    adapter: FileDropAdapter,
    drop: Path,
    federation: FederationKeys,
    keys: DomainKey,
    pseudonymise: Pseudonymiser,
) -> None:
    exports = write_municipality_exports(drop)
    with structlog.testing.capture_logs() as logs:
        reports = await adapter.process(pseudonymise, keys)

    by_export = {r.export: r for r in reports}
    assert (by_export["huisvesting"].accepted, by_export["huisvesting"].quarantined) == (25, 4)
    assert (by_export["schulden"].accepted, by_export["schulden"].quarantined) == (25, 4)
    assert sorted(p.name for p in (drop / PROCESSED).iterdir()) == [
        "huisvesting_2026-11.csv",
        "schulden_2026-11.jsonl",
    ]
    for name, expected in (
        ("huisvesting_2026-11.csv", exports.bad_housing_lines),
        ("schulden_2026-11.jsonl", exports.bad_debt_lines),
    ):
        rejected = [
            json.loads(line)
            for line in (drop / QUARANTINE / f"{name}.rejected.jsonl").read_text().splitlines()
        ]
        assert {r["line"] for r in rejected} == set(expected)
        for r in rejected:
            assert expected[r["line"]] in r["reason"]
            for secret in exports.secret_values:
                assert secret not in r["reason"]
    # The quarantine file is the partner's own data: it keeps the row for correction.
    assert (
        "ontruimd-geheim"
        in (drop / QUARANTINE / "huisvesting_2026-11.csv.rejected.jsonl").read_text()
    )
    assert sum(1 for e in logs if e["event"] == "row quarantined") == 8
    dumped = json.dumps(logs, default=str)
    for secret in exports.secret_values:
        assert secret not in dumped

    _check_answers(adapter, exports, federation)


def _check_answers(
    adapter: FileDropAdapter, exports: MunicipalityExports, federation: FederationKeys
) -> None:
    both = next(b for b in exports.housing if b in exports.debts)
    hexa = pseudonym_of(federation, GEMEENTE, both)
    assert adapter.known(hexa) == "zvh-loket@rotterdam.example"
    facts = adapter.facts(hexa, [HOUSING, DEBTS, "zorg.in_zorg"])
    housing = [f for f in facts if f.category == HOUSING]
    debts = [f for f in facts if f.category == DEBTS]
    status, since = exports.housing[both]
    assert len(housing) == 1
    assert housing[0].fields["status"].text == status
    assert (housing[0].fields["sinds"].date.year, housing[0].fields["sinds"].date.day) == (
        since.year,
        since.day,
    )
    assert len(debts) == 1
    assert debts[0].fields["schuldhulp"].flag is exports.debts[both][0]
    assert debts[0].fields["bedrag"].number == exports.debts[both][1]
    assert debts[0].fields["sinds"].date.month == 6
    assert debts[0].fields["sinds"].date.day == 0
    assert adapter.facts(hexa, [HOUSING]) == housing

    stranger = pseudonym_of(federation, GEMEENTE, fake_bsns(1, seed=1234)[0])
    assert adapter.known(stranger) is None
    assert adapter.facts(stranger, [HOUSING, DEBTS]) == []


async def test_the_store_holds_no_identifier(
    adapter: FileDropAdapter, drop: Path, keys: DomainKey, pseudonymise: Pseudonymiser
) -> None:
    exports = write_municipality_exports(drop)
    await adapter.process(pseudonymise, keys)
    engine = adapter._engine  # the adapter's own store, read back whole
    meta = sa.MetaData()
    meta.reflect(engine)
    with engine.connect() as conn:
        dump = repr([conn.execute(sa.select(t)).all() for t in meta.sorted_tables])
    assert "filedrop_records" in meta.tables
    for secret in exports.secret_values:
        assert secret not in dump


async def test_a_file_is_processed_once_per_content(
    adapter: FileDropAdapter,
    drop: Path,
    federation: FederationKeys,
    keys: DomainKey,
    pseudonymise: Pseudonymiser,
) -> None:
    exports = write_municipality_exports(drop)
    await adapter.process(pseudonymise, keys)
    assert await adapter.process(pseudonymise, keys) == []
    # The same export delivered again under another name changes nothing.
    shutil.copy(drop / PROCESSED / "schulden_2026-11.jsonl", drop / "schulden_2026-11-bis.jsonl")
    again = await adapter.process(pseudonymise, keys)
    assert [(r.duplicate, r.accepted) for r in again] == [(True, 0)]
    someone = next(iter(exports.debts))
    debts = adapter.facts(pseudonym_of(federation, GEMEENTE, someone), [DEBTS])
    assert len(debts) == 1
    assert not (drop / "schulden_2026-11-bis.jsonl").exists()


async def test_a_new_snapshot_replaces_the_export(
    adapter: FileDropAdapter,
    drop: Path,
    federation: FederationKeys,
    keys: DomainKey,
    pseudonymise: Pseudonymiser,
) -> None:
    exports = write_municipality_exports(drop)
    await adapter.process(pseudonymise, keys)
    only_housing = next(b for b in exports.housing if b not in exports.debts)
    stays = next(b for b in exports.housing if b != only_housing)
    (drop / "huisvesting_2026-12.csv").write_text(
        f"bsn;naam;status;sinds\n{stays};N;urgentie;2026-11-30\n", encoding="utf-8"
    )
    [report] = await adapter.process(pseudonymise, keys)
    assert report.accepted == 1
    assert adapter.known(pseudonym_of(federation, GEMEENTE, only_housing)) is None
    [fact] = adapter.facts(pseudonym_of(federation, GEMEENTE, stays), [HOUSING])
    assert fact.fields["status"].text == "urgentie"


async def test_a_failure_changes_nothing_and_the_file_waits_for_the_next_run(
    pki: Pki,
    adapter: FileDropAdapter,
    drop: Path,
    federation: FederationKeys,
    keys: DomainKey,
    pseudonymise: Pseudonymiser,
) -> None:
    exports = write_municipality_exports(drop)
    unreachable = PartnerClient.connect(
        "127.0.0.1:9",
        certificate_chain=pki.partner_cert,
        private_key=pki.partner_key,
        root_certificates=pki.ca,
        server_name="localhost",
        timeout=1.0,
        retry=RetryPolicy(max_attempts=1),
    )
    async with unreachable:
        with pytest.raises(PartnerRpcError) as err:
            await adapter.process(
                lambda batch: unreachable.pseudonymise(batch, purpose="zvh.test"), keys
            )
    assert err.value.code is grpc.StatusCode.UNAVAILABLE
    assert (drop / "huisvesting_2026-11.csv").exists()
    assert adapter.index.count() == 0
    reports = await adapter.process(pseudonymise, keys)
    assert sum(r.accepted for r in reports) == 50
    _check_answers(adapter, exports, federation)


async def test_a_file_without_the_declared_columns_is_refused_whole(
    adapter: FileDropAdapter, drop: Path, keys: DomainKey, pseudonymise: Pseudonymiser
) -> None:
    (drop / "huisvesting_2026-10.csv").write_text("bsn;woonsituatie\n123456782;dakloos\n")
    (drop / "notities.txt").write_text("not an export\n")
    [report] = await adapter.process(pseudonymise, keys)
    assert report.refused == "the header lacks column(s) ['sinds', 'status']"
    assert (drop / QUARANTINE / "huisvesting_2026-10.csv").exists()
    assert "lacks" in (drop / QUARANTINE / "huisvesting_2026-10.csv.reason.txt").read_text()
    assert (drop / "notities.txt").exists()
    assert adapter.index.count() == 0


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.update(version=3), "version: must be 1"),
        (lambda d: d.update(contact="bel ons"), "e-mail address or a phone number"),
        (lambda d: d["exports"]["huisvesting"].update(format="xlsx"), "'xlsx' is not one of csv"),
        (lambda d: d["exports"]["huisvesting"].update(mode="merge"), "not one of snapshot"),
        (lambda d: d["exports"]["huisvesting"].update(delimiter=";;"), "one character"),
        (lambda d: d["exports"]["huisvesting"].update(pattern="../*.csv"), "not a path"),
        (lambda d: d["exports"]["schulden"].update(pattern="huisvesting_*.csv"), "share a file"),
        (
            lambda d: d["exports"]["schulden"]["fields"]["bedrag"].update(required="ja"),
            "true or false",
        ),
        (lambda d: d["exports"]["schulden"]["id"].update(type="BSN!"), "id.type"),
        (lambda d: d["exports"]["schulden"].pop("category"), "missing required key 'category'"),
    ],
)
def test_a_bad_schema_is_refused_with_a_located_message(change: object, message: str) -> None:
    doc = yaml.safe_load(MUNICIPALITY_SCHEMA)
    change(doc)  # type: ignore[operator]
    with pytest.raises(MappingError) as err:
        DropSchema.from_dict(doc, "gemeente.yaml")
    assert message in str(err.value)
    assert str(err.value).startswith("gemeente.yaml")
