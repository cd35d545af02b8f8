"""Generated test data: simulated partner sources over fake BSNs, and invalid BSNs.

Everything is made from a seeded random generator, so a failing test can be
re-run with the same data. The BSNs come from :mod:`gateway.dev.fakedata`.
"""

from __future__ import annotations

import datetime as dt
import json
import random
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

from gateway.dev.fakedata import fake_bsns
from policy.pseudonyms import is_valid_bsn


def invalid_bsn(rng: random.Random) -> str:
    """Nine digits that fail the elfproef."""
    while True:
        value = f"{rng.randrange(100_000_000, 1_000_000_000)}"
        if not is_valid_bsn(value):
            return value


FEIT_CODES = ("geweld", "bedreiging", "vernieling", "diefstal", "drugs", "overlast")
TEAMS = {"noord": "wijkteam-noord@politie.example", "zuid": "wijkteam-zuid@politie.example"}


@dataclass
class PoliceData:
    """A simulated police registration system, and what its facts should come out as."""

    persons: dict[int, tuple[str, str, str]]
    """persoon_id -> (bsn, naam, team)."""
    antecedents: list[tuple[int, str, dt.date]]
    """(persoon_id, feitcode, pleegdatum)."""
    flags: dict[int, tuple[bool, str]]
    """persoon_id -> (vuurwapen, risiconiveau) for persons with a risk entry."""

    def expected_antecedents(self, persoon_id: int) -> dict[str, tuple[int, dt.date]]:
        """feitcode -> (count, latest date) for one person."""
        out: dict[str, tuple[int, dt.date]] = {}
        for pid, code, when in self.antecedents:
            if pid == persoon_id:
                count, latest = out.get(code, (0, when))
                out[code] = (count + 1, max(latest, when))
        return out


def police_data(persons: int = 120, seed: int = 11) -> PoliceData:
    """Generate a police source: persons with fake BSNs and names, antecedents, risk flags."""
    rng = random.Random(seed)
    bsns = fake_bsns(persons, seed)
    names = ["de Vries", "Jansen", "Bakker", "Visser", "Smit", "Meijer", "de Boer", "Mulder"]
    people = {
        1000 + i: (
            bsn,
            f"{rng.choice('ABCDEFGHJKLMNPRSTW')}. {rng.choice(names)}",
            rng.choice(list(TEAMS)),
        )
        for i, bsn in enumerate(bsns)
    }
    antecedents = []
    for pid in people:
        for _ in range(rng.choice((0, 0, 1, 2, 3, 5, 8))):
            when = dt.date(2015, 1, 1) + dt.timedelta(days=rng.randrange(11 * 365))
            antecedents.append((pid, rng.choice(FEIT_CODES), when))
    flags = {
        pid: (rng.random() < 0.2, rng.choice(("laag", "midden", "hoog")))
        for pid in people
        if rng.random() < 0.4
    }
    return PoliceData(people, antecedents, flags)


def create_police_db(engine: sa.Engine, data: PoliceData) -> None:
    """Create and fill the police tables (SQLite or PostgreSQL)."""
    meta = sa.MetaData()
    teams = sa.Table(
        "teams",
        meta,
        sa.Column("team", sa.String(20), primary_key=True),
        sa.Column("mailbox", sa.String(80)),
    )
    personen = sa.Table(
        "personen",
        meta,
        sa.Column("persoon_id", sa.Integer, primary_key=True),
        sa.Column("bsn", sa.String(9)),
        sa.Column("naam", sa.String(80)),
        sa.Column("team", sa.String(20), sa.ForeignKey("teams.team")),
    )
    antecedenten = sa.Table(
        "antecedenten",
        meta,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("persoon_id", sa.Integer, sa.ForeignKey("personen.persoon_id")),
        sa.Column("feitcode", sa.String(20)),
        sa.Column("pleegdatum", sa.Date),
    )
    risico = sa.Table(
        "risico",
        meta,
        sa.Column("persoon_id", sa.Integer, sa.ForeignKey("personen.persoon_id"), primary_key=True),
        sa.Column("vuurwapen", sa.Boolean),
        sa.Column("niveau", sa.String(10)),
    )
    meta.create_all(engine)
    with engine.begin() as conn:
        conn.execute(sa.insert(teams), [{"team": t, "mailbox": m} for t, m in TEAMS.items()])
        conn.execute(
            sa.insert(personen),
            [
                {"persoon_id": pid, "bsn": bsn, "naam": naam, "team": team}
                for pid, (bsn, naam, team) in data.persons.items()
            ],
        )
        conn.execute(
            sa.insert(antecedenten),
            [{"persoon_id": p, "feitcode": c, "pleegdatum": d} for p, c, d in data.antecedents],
        )
        conn.execute(
            sa.insert(risico),
            [{"persoon_id": p, "vuurwapen": v, "niveau": n} for p, (v, n) in data.flags.items()],
        )


POLICE_MAPPING = """\
version: 1
id_type: bsn
subjects:
  table: personen
  key_column: persoon_id
  id_column: bsn
contact:
  query: >-
    SELECT t.mailbox FROM personen p JOIN teams t ON t.team = p.team
    WHERE p.persoon_id = :key
  column: mailbox
  handle: zvh-loket@politie.example
categories:
  justitie.antecedenten:
    query: >-
      SELECT feitcode, COUNT(*) AS aantal, MAX(pleegdatum) AS laatste
      FROM antecedenten WHERE persoon_id = :key
      GROUP BY feitcode ORDER BY feitcode
    fields:
      feit:
        column: feitcode
        type: code
        values: [geweld, bedreiging, vernieling, diefstal, drugs, overlast]
      aantal: {column: aantal, type: number}
      laatste: {column: laatste, type: date}
  veiligheid.risico:
    query: SELECT vuurwapen, niveau FROM risico WHERE persoon_id = :key
    fields:
      vuurwapen: {column: vuurwapen, type: bool}
      niveau: {column: niveau, type: code, values: [laag, midden, hoog]}
"""


HOUSING_STATUS = ("dakloos", "dreigend-dakloos", "huurachterstand", "urgentie")

MUNICIPALITY_SCHEMA = """\
version: 1
contact: zvh-loket@rotterdam.example
exports:
  huisvesting:
    pattern: "huisvesting_*.csv"
    format: csv
    delimiter: ";"
    mode: snapshot
    id: {column: bsn, type: bsn}
    category: sociaal.huisvesting
    fields:
      status:
        column: status
        type: code
        required: true
        values: [dakloos, dreigend-dakloos, huurachterstand, urgentie]
      sinds: {column: sinds, type: date}
  schulden:
    pattern: "schulden_*.jsonl"
    format: jsonl
    mode: append
    id: {column: burgerservicenummer}
    category: sociaal.inkomen_schulden
    fields:
      schuldhulp: {column: in_schuldhulp, type: bool, required: true}
      bedrag: {column: totaal_schuld, type: number}
      sinds: {column: start, type: date}
"""


@dataclass
class MunicipalityExports:
    """Simulated municipality exports and the rows the tests expect to be refused."""

    housing: dict[str, tuple[str, dt.date]]
    """bsn -> (status, sinds) of the good housing rows."""
    debts: dict[str, tuple[bool, int]]
    """bsn -> (in schuldhulp, amount) of the good debt rows."""
    bad_housing_lines: dict[int, str]
    """CSV line number -> a word the quarantine reason must contain."""
    bad_debt_lines: dict[int, str]
    secret_values: list[str]
    """BSNs (good and bad) and rejected values that must never reach a log line."""


def write_municipality_exports(drop: Path, seed: int = 21) -> MunicipalityExports:
    """Write ``huisvesting_2026-11.csv`` and ``schulden_2026-11.jsonl`` into ``drop``."""
    rng = random.Random(seed)
    bsns = fake_bsns(40, seed)
    housing = {
        b: (rng.choice(HOUSING_STATUS), dt.date(2025, rng.randrange(1, 13), rng.randrange(1, 28)))
        for b in bsns[:25]
    }
    debts = {b: (rng.random() < 0.5, rng.randrange(100, 40_000)) for b in bsns[15:]}
    lines = ["bsn;naam;status;sinds"]
    for b, (status, since) in housing.items():
        lines.append(f"{b};Fam. {rng.choice('ABCDEFG')};{status};{since.isoformat()}")
    bad_bsn = invalid_bsn(rng)
    bad = {
        len(lines) + 1: ("elfproef", f"{bad_bsn};X;dakloos;2025-01-01"),
        len(lines) + 2: ("value set", f"{bsns[30]};Y;ontruimd-geheim;2025-01-01"),
        len(lines) + 3: ("date", f"{bsns[31]};Z;dakloos;31-02-2025"),
        len(lines) + 4: ("required", f"{bsns[32]};Q;;2025-01-01"),
    }
    lines += [row for _, row in bad.values()]
    (drop / "huisvesting_2026-11.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = []
    for b, (help_, amount) in debts.items():
        out.append(
            json.dumps(
                {
                    "burgerservicenummer": b,
                    "in_schuldhulp": "ja" if help_ else "nee",
                    "totaal_schuld": amount,
                    "start": "2024-06",
                }
            )
        )
    bad_debts = {
        len(out) + 1: ("not a record", '{"burgerservicenummer": "oops"'),
        len(out) + 2: ("not a record", "[1, 2, 3]"),
        len(out) + 3: (
            "required",
            json.dumps({"burgerservicenummer": bsns[33], "totaal_schuld": 5}),
        ),
        len(out) + 4: (
            "whole number",
            json.dumps(
                {"burgerservicenummer": bsns[34], "in_schuldhulp": True, "totaal_schuld": "veel"}
            ),
        ),
    }
    out += [row for _, row in bad_debts.values()]
    (drop / "schulden_2026-11.jsonl").write_text("\n".join(out) + "\n", encoding="utf-8")
    return MunicipalityExports(
        housing=housing,
        debts=debts,
        bad_housing_lines={line: word for line, (word, _) in bad.items()},
        bad_debt_lines={line: word for line, (word, _) in bad_debts.items()},
        secret_values=[*bsns, bad_bsn, "ontruimd-geheim", "veel"],
    )
