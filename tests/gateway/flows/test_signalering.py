"""The node's answer on SQLite and PostgreSQL, its audit fields, and the directory file."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from schakel.v1 import common_pb2

from gateway.cases import CaseInputError
from gateway.cases.suppression import SuppressionError
from gateway.collector.directory import DirectoryError, DirectoryNode, load_directory
from gateway.flows.signalering import (
    SIGNALS_ACTIVITY,
    SIGNALS_CATEGORY,
    build_signals_response,
    signals_audit,
)
from gateway.storage import make_engine, migrate
from tests.support.signals import APR, MAR, MAY, Plan, march_plan, populate


@pytest.fixture
def engine(db_url: str) -> Iterator[sa.Engine]:
    eng = make_engine(db_url)
    migrate(eng)
    yield eng
    eng.dispose()


def published(
    engine: sa.Engine, start: object = MAR, end: object = APR, k: int = 10
) -> dict[tuple[str, int, str, str], int | None]:
    answer = build_signals_response(engine, "zvh-haaglanden", start, end, k)  # type: ignore[arg-type]
    return {
        (c.theme, c.phase, c.outcome, c.bottleneck): None if c.suppressed else c.count
        for c in answer.cells
    }


def test_answer_per_period_and_threshold(engine: sa.Engine) -> None:
    populate(engine, [*march_plan(), Plan(9, "huiselijk-geweld", APR + timedelta(days=2))])
    march = published(engine)
    assert march[("*", common_pb2.PHASE_UNSPECIFIED, "*", "*")] == 73
    assert march[("*", common_pb2.PHASE_UNSPECIFIED, "*", "zorgplek")] == 15
    assert sum(v is None for v in march.values()) == 4
    # April adds nine fresh cases of a new theme: a theme total below k, hidden with a partner.
    april = published(engine, APR, MAY)
    hg = ("huiselijk-geweld", common_pb2.PHASE_UNSPECIFIED, "*", "*")
    assert april[hg] is None
    assert april[("huiselijk-geweld", common_pb2.PHASE_AANMELDING, "", "")] is None
    hidden_totals = [key for key, v in april.items() if v is None and key[1] == 0]
    assert len(hidden_totals) >= 2
    # With k = 1 nothing is hidden and the cells are the registry's own counts.
    plain = published(engine, APR, MAY, k=1)
    assert None not in plain.values()
    assert plain[("huiselijk-geweld", common_pb2.PHASE_AANMELDING, "", "")] == 9
    assert published(engine, MAR.replace(year=2020), APR.replace(year=2020)) == {
        ("*", common_pb2.PHASE_UNSPECIFIED, "*", "*"): 0
    }


def test_bad_period_or_threshold_is_refused(engine: sa.Engine) -> None:
    with pytest.raises(CaseInputError, match="period_start must be before period_end"):
        published(engine, APR, MAR)
    with pytest.raises(SuppressionError, match="k must be an integer of at least 1"):
        published(engine, k=0)


def test_audit_fields() -> None:
    allowed = signals_audit(answered=True)
    assert (allowed.activity_id, allowed.categories) == (SIGNALS_ACTIVITY, (SIGNALS_CATEGORY,))
    assert allowed.decision() == common_pb2.DecisionSummary(
        outcome=common_pb2.DECISION_OUTCOME_ALLOW, released=[SIGNALS_CATEGORY]
    )
    denied = signals_audit(answered=False).decision()
    assert denied == common_pb2.DecisionSummary(outcome=common_pb2.DECISION_OUTCOME_DENY)


def test_directory_in_toml_and_yaml(tmp_path: Path) -> None:
    toml = tmp_path / "nodes.toml"
    toml.write_text(
        '[[nodes]]\nid = "zvh-haaglanden"\naddress = "10.0.0.5:7443"\nregion = "Haaglanden"\n'
        '[[nodes]]\nid = "zvh-twente"\naddress = "[::1]:7443"\n'
    )
    expected = [
        DirectoryNode("zvh-haaglanden", "10.0.0.5:7443", "Haaglanden"),
        DirectoryNode("zvh-twente", "[::1]:7443", "zvh-twente"),
    ]
    assert load_directory(toml) == expected
    yml = tmp_path / "nodes.yaml"
    yml.write_text(
        "nodes:\n  - {id: zvh-haaglanden, address: '10.0.0.5:7443', region: Haaglanden}\n"
        "  - {id: zvh-twente, address: '[::1]:7443'}\n"
    )
    assert load_directory(yml) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("nodes = [", "not valid TOML"),
        ("x = 1", "expected a list 'nodes' at the top level"),
        ("nodes = []", "'nodes' is empty"),
        ("nodes = [1]", "nodes[0]: expected a table with id and address"),
        ('[[nodes]]\naddress = "h:1"', "nodes[0].id: a node id (string) is required"),
        ('[[nodes]]\nid = "ZVH X"\naddress = "h:1"', "nodes[0].id: node id 'ZVH X' must be"),
        ('[[nodes]]\nid = "a"\naddress = "h"', "nodes[0].address: expected host:port, not 'h'"),
        ('[[nodes]]\nid = "a"\naddress = "h:1"\nregion = ""', "nodes[0].region: expected a name"),
        ('[[nodes]]\nid = "a"\naddress = "h:1"\nport = 3', "nodes[0]: unknown key(s) port"),
        (
            '[[nodes]]\nid = "a"\naddress = "h:1"\n[[nodes]]\nid = "a"\naddress = "h:2"',
            "nodes[1].id: node 'a' is listed twice",
        ),
    ],
)
def test_directory_errors_name_the_entry(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "nodes.toml"
    path.write_text(text)
    with pytest.raises(DirectoryError, match=f"^{re.escape(str(path))}: ") as err:
        load_directory(path)
    assert message in str(err.value)


def test_directory_file_kind_and_presence(tmp_path: Path) -> None:
    with pytest.raises(DirectoryError, match="cannot read the directory"):
        load_directory(tmp_path / "absent.toml")
    odd = tmp_path / "nodes.json"
    odd.write_text("{}")
    with pytest.raises(DirectoryError, match=r"must be a \.toml, \.yaml or \.yml file"):
        load_directory(odd)
    bad = tmp_path / "nodes.yaml"
    bad.write_text("nodes: [")
    with pytest.raises(DirectoryError, match="not valid YAML"):
        load_directory(bad)
