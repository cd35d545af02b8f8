"""Generated test data: elfproef-valid fake BSNs and simulated partner sources.

Everything is made from a seeded random generator, so a failing test can be
re-run with the same data. The BSNs are random, not real people's.
"""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass

import sqlalchemy as sa

from policy.pseudonyms import is_valid_bsn

_WEIGHTS = (9, 8, 7, 6, 5, 4, 3, 2)


def fake_bsn(rng: random.Random) -> str:
    """A random nine-digit number that passes the elfproef."""
    while True:
        digits = [rng.randrange(10) for _ in range(8)]
        if digits[0] == 0:
            continue
        last = sum(w * d for w, d in zip(_WEIGHTS, digits, strict=True)) % 11
        if last < 10:
            value = "".join(map(str, digits)) + str(last)
            assert is_valid_bsn(value)
            return value


def fake_bsns(count: int, seed: int = 7) -> list[str]:
    """``count`` distinct fake BSNs."""
    rng = random.Random(seed)
    out: dict[str, None] = {}
    while len(out) < count:
        out[fake_bsn(rng)] = None
    return list(out)


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
