"""The simulated partner systems of ``make run``: real adapters with generated data.

Each partner keeps its own data under ``<state>/partners/<org-id>`` and
talks to its node only through the partner SDK over mTLS, like a real
partner system: police (a SQL store), GGZ (a SQL store with care data), a
gemeente (a drop folder of exports) and reclassering (pushes referrals).
The data is made up: random elfproef-valid BSNs, plus the demo person the
walkthrough follows. Nothing here is test code; it is the dev federation.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from schakel.v1 import common_pb2, partner_pb2

from adapters.filedrop import DropSchema, FileDropAdapter, FileReport
from adapters.index import PseudonymIndex
from adapters.sdk import Adapter, AdapterRunner, DomainKey, PartnerClient, SubjectRow
from adapters.sql import SqlAdapter, SqlMapping
from gateway.dev.fakedata import fake_bsns

PEOPLE = 200
"""Generated records per partner store, besides the demo person."""


@dataclass
class Delivery:
    """Facts the node delivered to a simulated partner, as that partner resolved them."""

    pseudonym: str
    """The subject in the recipient's own domain (hex), as decrypted by its runner."""
    local_keys: tuple[str, ...]
    """What the recipient's own pseudonym index resolves that pseudonym to."""
    task: partner_pb2.PartnerTask


class Recording:
    """Wraps an adapter so the walkthrough can show what each delivery resolved to."""

    def __init__(self, inner: Adapter, index: PseudonymIndex) -> None:
        """Delegate to ``inner``; ``index`` is its pseudonym index."""
        self.inner = inner
        self.index = index
        self.deliveries: list[Delivery] = []

    def subjects(self) -> Iterable[SubjectRow]:
        """The inner adapter's records."""
        return self.inner.subjects()

    def known(self, pseudonym_hex: str) -> str | None:
        """The inner adapter's answer."""
        return self.inner.known(pseudonym_hex)

    def facts(self, pseudonym_hex: str, categories: Sequence[str]) -> list[common_pb2.Fact]:
        """The inner adapter's facts."""
        return self.inner.facts(pseudonym_hex, categories)

    def deliver(self, pseudonym_hex: str, task: partner_pb2.PartnerTask) -> None:
        """Keep the delivery with its own index's resolution, then hand it on."""
        self.deliveries.append(Delivery(pseudonym_hex, self.index.lookup(pseudonym_hex), task))
        self.inner.deliver(pseudonym_hex, task)


def _ignore_delivery(local_keys: Sequence[str], task: partner_pb2.PartnerTask) -> None:
    """The simulated systems file nothing; :class:`Recording` keeps what arrived."""


_POLICE_MAPPING: dict[str, Any] = {
    "version": 1,
    "subjects": {"table": "personen", "key_column": "persoon_id", "id_column": "bsn"},
    "contact": {
        "query": "SELECT t.mailbox FROM personen p JOIN teams t ON t.team = p.team "
        "WHERE p.persoon_id = :key",
        "column": "mailbox",
    },
    "categories": {
        "justitie.antecedenten": {
            "query": "SELECT feitcode, COUNT(*) AS aantal, MAX(pleegdatum) AS laatste "
            "FROM antecedenten WHERE persoon_id = :key GROUP BY feitcode",
            "fields": {
                "zwaarste_soort": {"column": "feitcode", "type": "code"},
                "aantal": {"column": "aantal", "type": "number"},
                "laatste_datum": {"column": "laatste", "type": "date"},
            },
        }
    },
}

_GGZ_MAPPING: dict[str, Any] = {
    "version": 1,
    "subjects": {"table": "clienten", "key_column": "client_id", "id_column": "bsn"},
    "contact": {"handle": "crisisdienst@ggz-rr.example"},
    "categories": {
        "zorg.in_zorg": {
            "query": "SELECT 1 AS in_zorg, zorgsoort, startdatum FROM trajecten "
            "WHERE client_id = :key AND einddatum IS NULL",
            "fields": {
                "in_zorg": {"column": "in_zorg", "type": "bool"},
                "zorgsoort": {"column": "zorgsoort", "type": "code"},
                "sinds": {"column": "startdatum", "type": "date"},
            },
        }
    },
}

_GEMEENTE_SCHEMA: dict[str, Any] = {
    "version": 1,
    "contact": "wijkteam@gemeente-rotterdam.example",
    "exports": {
        "huisvesting": {
            "pattern": "huisvesting_*.csv",
            "format": "csv",
            "delimiter": ";",
            "mode": "snapshot",
            "id": {"column": "bsn", "type": "bsn"},
            "category": "sociaal.huisvesting",
            "fields": {
                "status": {
                    "column": "status",
                    "type": "code",
                    "required": True,
                    "values": ["zelfstandig", "inwonend", "dakloos", "dreigende-uitzetting"],
                },
                "sinds": {"column": "sinds", "type": "date"},
                "huurachterstand_maanden": {"column": "achterstand", "type": "number"},
            },
        },
        "schulden": {
            "pattern": "schulden_*.csv",
            "format": "csv",
            "delimiter": ";",
            "mode": "snapshot",
            "id": {"column": "bsn", "type": "bsn"},
            "category": "sociaal.inkomen_schulden",
            "fields": {
                "problematische_schulden": {"column": "problematisch", "type": "bool"},
                "aantal_schuldeisers": {"column": "schuldeisers", "type": "number"},
                "schuldhulpverlening": {"column": "shv", "type": "bool"},
            },
        },
    },
}


def _sqlite(path: Path) -> sa.Engine:
    path.parent.mkdir(parents=True, exist_ok=True)
    return sa.create_engine(f"sqlite:///{path}")


def _police_store(path: Path, demo_bsn: str, region: str, seed: int) -> sa.Engine:
    """The police registration database (created once with generated people)."""
    fresh = not path.exists()
    engine = _sqlite(path)
    if not fresh:
        return engine
    rng = random.Random(seed)  # noqa: S311 - made-up data, reproducible, not a secret
    soorten = ["geweld", "vermogen", "opiumwet", "verkeer", "overig"]
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE teams (team TEXT PRIMARY KEY, mailbox TEXT NOT NULL)")
        conn.exec_driver_sql(
            "CREATE TABLE personen (persoon_id INTEGER PRIMARY KEY, bsn TEXT, team TEXT)"
        )
        conn.exec_driver_sql(
            "CREATE TABLE antecedenten (persoon_id INTEGER, feitcode TEXT, pleegdatum TEXT)"
        )
        teams = [f"wijkteam-{n}" for n in range(1, 6)]
        for team in teams:
            conn.execute(
                sa.text("INSERT INTO teams VALUES (:t, :m)"),
                {"t": team, "m": f"{team}@politie-{region}.example"},
            )
        people = [demo_bsn, *fake_bsns(PEOPLE, seed, exclude={demo_bsn})]
        for number, bsn in enumerate(people, start=1):
            conn.execute(
                sa.text("INSERT INTO personen VALUES (:k, :b, :t)"),
                {"k": number, "b": bsn, "t": rng.choice(teams)},
            )
            feiten = 4 if bsn == demo_bsn else rng.randrange(0, 4)
            for n in range(feiten):
                conn.execute(
                    sa.text("INSERT INTO antecedenten VALUES (:k, :f, :d)"),
                    {
                        "k": number,
                        "f": "geweld" if bsn == demo_bsn else rng.choice(soorten),
                        "d": f"{2020 + n}-{rng.randrange(1, 13):02d}-{rng.randrange(1, 29):02d}",
                    },
                )
    return engine


def _ggz_store(path: Path, demo_bsn: str, seed: int) -> sa.Engine:
    """The GGZ client administration (created once; health data, AVG art. 9)."""
    fresh = not path.exists()
    engine = _sqlite(path)
    if not fresh:
        return engine
    rng = random.Random(seed)  # noqa: S311 - made-up data, reproducible, not a secret
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE clienten (client_id TEXT PRIMARY KEY, bsn TEXT)")
        conn.exec_driver_sql(
            "CREATE TABLE trajecten (client_id TEXT, zorgsoort TEXT, startdatum TEXT, "
            "einddatum TEXT)"
        )
        people = [demo_bsn, *fake_bsns(PEOPLE, seed, exclude={demo_bsn})]
        for number, bsn in enumerate(people, start=1):
            key = f"C{number:05d}"
            conn.execute(sa.text("INSERT INTO clienten VALUES (:k, :b)"), {"k": key, "b": bsn})
            zorgsoort = "ambulant" if bsn == demo_bsn else rng.choice(["ambulant", "fact"])
            conn.execute(
                sa.text("INSERT INTO trajecten VALUES (:k, :z, :s, NULL)"),
                {"k": key, "z": zorgsoort, "s": f"2024-{rng.randrange(1, 13):02d}-01"},
            )
    return engine


def _gemeente_exports(drop: Path, demo_bsn: str, seed: int) -> None:
    """Drop the municipality's first exports, with one bad row to show the quarantine."""
    rng = random.Random(seed)  # noqa: S311 - made-up data, reproducible, not a secret
    people = [demo_bsn, *fake_bsns(PEOPLE, seed, exclude={demo_bsn})]
    drop.mkdir(parents=True, exist_ok=True)
    with (drop / "huisvesting_2026-11.csv").open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out, delimiter=";")
        writer.writerow(["bsn", "status", "sinds", "achterstand"])
        for bsn in people:
            status = "dakloos" if bsn == demo_bsn else rng.choice(["zelfstandig", "inwonend"])
            writer.writerow([bsn, status, "2026-03-15", 5 if bsn == demo_bsn else 0])
        writer.writerow(["123456789", "dakloos", "2026-01-01", 1])  # fails the elfproef
    with (drop / "schulden_2026-11.csv").open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out, delimiter=";")
        writer.writerow(["bsn", "problematisch", "schuldeisers", "shv"])
        for bsn in people[: PEOPLE // 2]:
            writer.writerow([bsn, "true", 7 if bsn == demo_bsn else rng.randrange(0, 4), "false"])


@dataclass
class SimPartner:
    """One running simulated partner system."""

    org_id: str
    client: PartnerClient
    keys: DomainKey
    adapter: Recording
    runner: AdapterRunner
    job: asyncio.Task[None]
    notes: list[str] = field(default_factory=list)
    """What happened at start-up (index sync, processed drop files)."""

    async def stop(self) -> None:
        """Stop the runner after the tasks in hand, and close the channel."""
        self.runner.stop()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.job, 5)
        await self.client.close()


ClientFactory = Callable[[str], PartnerClient]
"""An SDK client for an organisation id, over mTLS to that organisation's own node."""


async def start_partner(
    org_id: str,
    adapter: Adapter,
    index: PseudonymIndex,
    *,
    client: PartnerClient,
    keys: DomainKey,
    purpose: str,
    streaming: Callable[[], bool],
    drop: FileDropAdapter | None = None,
) -> SimPartner:
    """Index the partner's records through its node, then serve its task stream."""

    def pseudonymise(
        batch: Sequence[common_pb2.EncryptedPseudonym],
    ) -> Any:
        return client.pseudonymise(batch, purpose=purpose)

    notes: list[str] = []
    if drop is not None:
        reports: list[FileReport] = await drop.process(pseudonymise, keys)
        notes += [
            f"{r.name}: {r.accepted} rows accepted, {r.quarantined} quarantined" for r in reports
        ] or [f"no new exports in {drop.drop_dir}; {index.count()} records indexed"]
    else:
        report = await index.sync(adapter.subjects(), pseudonymise, keys)
        notes.append(f"index +{report.added} -{report.removed}, {index.count()} records")
    recording = Recording(adapter, index)
    runner = AdapterRunner(client, recording, keys=keys)
    job = asyncio.create_task(runner.run())
    for _ in range(500):
        if streaming():
            break
        await asyncio.sleep(0.01)
    else:
        runner.stop()
        raise RuntimeError(f"{org_id} did not open its task stream")
    return SimPartner(org_id, client, keys, recording, runner, job, notes)


def police(root: Path, org_id: str, region: str, demo_bsn: str, seed: int) -> SqlAdapter:
    """A police SQL store and its SqlAdapter (index in the same SQLite file)."""
    engine = _police_store(root / org_id / "registratie.db", demo_bsn, region, seed)
    index = PseudonymIndex(engine)
    index.create()
    adapter = SqlAdapter(
        engine,
        SqlMapping.from_dict(_POLICE_MAPPING, f"{org_id} mapping"),
        index,
        on_delivery=_ignore_delivery,
    )
    adapter.check()
    return adapter


def ggz(root: Path, org_id: str, demo_bsn: str, seed: int) -> SqlAdapter:
    """The GGZ client administration and its SqlAdapter."""
    engine = _ggz_store(root / org_id / "clienten.db", demo_bsn, seed)
    index = PseudonymIndex(engine)
    index.create()
    adapter = SqlAdapter(
        engine,
        SqlMapping.from_dict(_GGZ_MAPPING, f"{org_id} mapping"),
        index,
        on_delivery=_ignore_delivery,
    )
    adapter.check()
    return adapter


def gemeente(root: Path, org_id: str, demo_bsn: str, seed: int) -> FileDropAdapter:
    """The municipality's drop folder (first exports written once) and its store."""
    base = root / org_id
    store = base / "store.db"
    if not store.exists():
        _gemeente_exports(base / "drop", demo_bsn, seed)
    adapter = FileDropAdapter(
        base / "drop",
        DropSchema.from_dict(_GEMEENTE_SCHEMA, f"{org_id} schema"),
        _sqlite(store),
        on_delivery=_ignore_delivery,
    )
    adapter.create()
    return adapter
