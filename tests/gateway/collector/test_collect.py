"""``schakel signals collect`` against real nodes over mTLS, some of them silent."""

from __future__ import annotations

import asyncio
import csv
import html
import re
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import grpc
import pytest
from schakel.v1 import federation_pb2

from gateway.cli import main
from gateway.collector.collect import (
    MalformedAnswerError,
    Period,
    check_answer,
    collect,
    split_periods,
)
from gateway.collector.directory import DirectoryNode
from gateway.collector.report import CSV_HEADER
from gateway.rpc.server import NodeServer, Servicers
from gateway.tls import channel_credentials
from tests.support.pki import HL, RR, Credential, Federation, StartNode
from tests.support.signals import (
    APR,
    MAR,
    MAY,
    Plan,
    SignalsFederation,
    march_plan,
    populate,
    start_signals_node,
)

UT = "zvh-utrecht"
GONE = "zvh-gone"


def write_directory(path: Path, nodes: list[tuple[str, str, str]]) -> Path:
    path.write_text(
        "".join(
            f'[[nodes]]\nid = "{node_id}"\naddress = "{address}"\nregion = "{region}"\n\n'
            for node_id, address, region in nodes
        )
    )
    return path


def run_cli(federation: Federation, collector: Credential, directory: Path, *extra: str) -> Any:
    args = [
        "signals",
        "collect",
        "--directory",
        str(directory),
        "--cert",
        str(collector.cert_file),
        "--key",
        str(collector.key_file),
        "--ca",
        str(federation.ca_file),
        "--out",
        str(federation.root / "report"),
        *extra,
    ]
    # The CLI runs its own event loop, so it gets a thread while the nodes serve on this one.
    return asyncio.to_thread(main, args)


async def test_report_names_nodes_that_did_not_answer(
    federation: Federation, start_node: StartNode, capsys: pytest.CaptureFixture[str]
) -> None:
    hl = await start_signals_node(start_node, federation, HL)
    rr = await start_signals_node(start_node, federation, RR)
    stopped = await start_signals_node(start_node, federation, UT)
    populate(hl.engine, march_plan())
    populate(rr.engine, [Plan(30, "huiselijk-geweld", APR, ("huisvesting",))])
    await stopped.stop(grace=None)
    directory = write_directory(
        federation.root / "nodes.toml",
        [
            (HL, hl.address, "Haaglanden"),
            (RR, rr.address, "Rotterdam-Rijnmond"),
            (UT, stopped.address, "Utrecht"),
            (GONE, "127.0.0.1:1", "Nergens"),
        ],
    )
    code = await run_cli(
        federation,
        federation.collector(),
        directory,
        "--from",
        "2026-03-01",
        "--to",
        "2026-05-01",
        "--periods",
        "monthly",
        "--timeout",
        "5",
    )
    err = capsys.readouterr().err
    assert code == 0
    assert "asked 4 node(s) for 2 period(s): 2 answered, 2 did not answer every period" in err
    for silent in (UT, GONE):
        assert f"not answered: {silent} for 2026-03: UNAVAILABLE" in err
        assert f"not answered: {silent} for 2026-04: UNAVAILABLE" in err

    out = federation.root / "report"
    lines = (out / "signals.csv").read_text().splitlines()
    footer = [line for line in lines if line.startswith("#")]
    assert [line.split(":")[0] for line in footer] == ["# not answered"] * 4
    assert {line.split()[3] for line in footer} == {UT, GONE}
    rows = list(csv.DictReader(line for line in lines if not line.startswith("#")))
    assert tuple(rows[0]) == CSV_HEADER
    assert {r["node"] for r in rows} == {HL, RR}

    def row(node: str, start: str, **key: str) -> str:
        match = [
            r["count"]
            for r in rows
            if r["node"] == node
            and r["period_start"].startswith(start)
            and all(r[k] == v for k, v in key.items())
        ]
        assert len(match) == 1, (node, start, key)
        return match[0]

    assert row(HL, "2026-03", theme="*", phase="*", outcome="*", bottleneck="huisvesting") == "25"
    assert (
        row(HL, "2026-03", theme="complexe-casuistiek", phase="aanmelding", bottleneck="zorgplek")
        == "suppressed"
    )
    # Nothing was open at Rotterdam in March; in April its 30 referrals count.
    assert row(RR, "2026-03", theme="*", bottleneck="*") == "0"
    assert row(RR, "2026-04", theme="*", phase="*", outcome="*", bottleneck="huisvesting") == "30"

    page = (out / "signals.html").read_text()
    words = re.sub(r"<[^>]+>", " ", re.sub(r"(?s)<svg.*?</svg>", " ", page))
    text = " ".join(html.unescape(words).split())
    silent = text[text.index("Regio's zonder (volledig) antwoord") : text.index("Knelpunten per")]
    # One short Dutch line per region, whatever the number of months; no gRPC status names.
    assert silent.count("Utrecht (") == 1 and silent.count("Nergens (") == 1
    assert f"Utrecht ({UT}) was niet bereikbaar en ontbreekt over de hele periode." in silent
    assert f"Nergens ({GONE}) was niet bereikbaar en ontbreekt over de hele periode." in silent
    assert HL not in silent and RR not in silent
    assert "UNAVAILABLE" not in page and "suppressed" not in page
    assert "Periode: 1 maart 2026 t/m 30 april 2026" in text
    assert "2 van de 4 regio's antwoordden voor de hele periode" in text
    # Cases over the whole range (asked as one period): the 11 cases with two tags count once
    # per theme, and a suppressed number says so.
    assert (
        "Knelpunten per regio Regio Huisvesting Schulden Zorgplek Zonder knelpunt "
        "Haaglanden 25 11 15 22 Rotterdam-Rijnmond 30 0 0 0 "
        "Utrecht geen antwoord Nergens geen antwoord" in text
    )
    assert (
        "Thema's per regio Regio Complexe casuïstiek Huiselijk geweld Nazorg ex gedetineerden "
        "Haaglanden 40 0 22 Rotterdam-Rijnmond 0 30 0" in text
    )
    assert (
        "Fasen per regio (aan het eind van de periode) Regio Aanmelding Casusoverleg Afschaling "
        "Haaglanden afgeschermd 37 afgeschermd Rotterdam-Rijnmond 30 0 0" in text
    )
    assert (  # the one small outcome
        "Uitkomsten van afgesloten casussen per regio Regio Doelen bereikt "
        "Haaglanden afgeschermd Rotterdam-Rijnmond 0" in text
    )
    # A chart of phases, and one per region that answered: axes, ticks, Dutch labels as text.
    assert page.count("<svg") == 3
    for chunk in page.split("<svg")[1:]:
        svg = ElementTree.fromstring("<svg" + chunk[: chunk.index("</svg>") + 6])
        assert svg.tag == "{http://www.w3.org/2000/svg}svg"
        assert float(svg.attrib["width"].removesuffix("pt")) >= 600
    charts = page[page.index("<svg") :]
    for words in ("Haaglanden: casussen per knelpunt", "mrt 2026", "apr 2026", "casussen"):
        assert words in charts
    assert "a = afgeschermd" in charts and "Zonder knelpunt" in charts
    assert "<script" not in page and "https://" not in page and "src=" not in page


async def test_no_answer_at_all_writes_no_report_and_fails(
    federation: Federation, capsys: pytest.CaptureFixture[str]
) -> None:
    directory = write_directory(federation.root / "nodes.toml", [(GONE, "127.0.0.1:1", "X")])
    code = await run_cli(
        federation, federation.collector(), directory, "--from", "2026-03-01", "--to", "2026-04-01"
    )
    assert code == 1
    assert "no node answered; no report written" in capsys.readouterr().err
    assert not (federation.root / "report").exists()


class SlowFederation(SignalsFederation):
    async def GetSignals(
        self, request: federation_pb2.SignalsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> federation_pb2.SignalsResponse:
        await asyncio.sleep(2)
        return await super().GetSignals(request, context)


class ImpostorFederation(SignalsFederation):
    async def GetSignals(
        self, request: federation_pb2.SignalsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> federation_pb2.SignalsResponse:
        answer = await super().GetSignals(request, context)
        answer.node_id = RR
        return answer


async def start_with(
    start_node: StartNode, federation: Federation, node_id: str, servicer: SignalsFederation
) -> NodeServer:
    node: NodeServer = await start_node(
        federation.config(federation.node(node_id)), Servicers(federation=servicer)
    )
    servicer.engine = node.engine
    return node


async def test_slow_wrong_and_misdirected_nodes_are_named(
    federation: Federation, start_node: StartNode
) -> None:
    slow = await start_with(start_node, federation, HL, SlowFederation(HL))
    impostor = await start_with(start_node, federation, UT, ImpostorFederation(UT))
    collector = federation.collector()
    creds = channel_credentials(federation.ca_file, collector.cert_file, collector.key_file)
    nodes = [
        DirectoryNode(HL, slow.address, "Haaglanden"),
        DirectoryNode(UT, impostor.address, "Utrecht"),
        # The directory points Rotterdam at Utrecht's node: its certificate does not match.
        DirectoryNode(RR, impostor.address, "Rotterdam"),
    ]
    result = await collect(nodes, creds, [Period(MAR, APR)], timeout=0.5)
    assert result.answers == {}
    reasons = {f.node.node_id: f.reason for f in result.failures}
    assert reasons[HL].startswith("DEADLINE_EXCEEDED")
    assert reasons[UT] == f"malformed answer: the answer names node {RR!r}"
    assert reasons[RR].startswith("UNAVAILABLE")
    assert [n.node_id for n in result.silent] == [HL, UT, RR]


async def test_answers_with_text_that_is_not_a_code_are_refused(
    federation: Federation, start_node: StartNode
) -> None:
    class Chatty(SignalsFederation):
        async def GetSignals(
            self,
            request: federation_pb2.SignalsRequest,
            context: grpc.aio.ServicerContext[Any, Any],
        ) -> federation_pb2.SignalsResponse:
            answer = await super().GetSignals(request, context)
            answer.cells.add(theme="Jan Jansen 123456782", count=12)
            return answer

    node = await start_with(start_node, federation, HL, Chatty(HL))
    collector = federation.collector()
    creds = channel_credentials(federation.ca_file, collector.cert_file, collector.key_file)
    result = await collect(
        [DirectoryNode(HL, node.address, "Haaglanden")], creds, [Period(MAR, APR)], timeout=5
    )
    assert [f.reason for f in result.failures] == ["malformed answer: cells[1].theme is not a code"]


def test_monthly_periods_follow_the_calendar() -> None:
    start = MAR.replace(day=15)
    periods = split_periods(start, MAY.replace(day=10), monthly=True)
    assert [p.label for p in periods] == [
        "2026-03-15/2026-04-01",
        "2026-04",
        "2026-05-01/2026-05-10",
    ]
    assert split_periods(MAR, MAY, monthly=False) == [Period(MAR, MAY)]
    december = split_periods(MAR.replace(month=12), MAR.replace(year=2027, month=2), monthly=True)
    assert [p.label for p in december] == ["2026-12", "2027-01"]
    with pytest.raises(ValueError, match="must be after the start"):
        split_periods(MAY, MAR, monthly=True)


def test_cli_refuses_bad_arguments_before_asking_anyone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    directory = write_directory(tmp_path / "nodes.toml", [(HL, "127.0.0.1:1", "X")])
    base = ["signals", "collect", "--directory", str(directory), "--cert", "c", "--key", "k"]
    base += ["--ca", "ca", "--out", str(tmp_path / "out")]
    assert main([*base, "--from", "2026-05-01", "--to", "2026-03-01"]) == 2
    assert "must be after the start" in capsys.readouterr().err
    assert main([*base, "--from", "2026-03-01", "--to", "2026-05-01"]) == 2
    assert "cannot read the TLS files" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([*base, "--from", "1 maart", "--to", "2026-05-01"])
    assert "expected a date YYYY-MM-DD, not '1 maart'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([*base, "--from", "2026-03-01", "--to", "2026-05-01", "--timeout", "0"])
    assert "expected seconds between 0 and 600" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("total", "reason"),
    [
        (
            federation_pb2.CaseTotal(dimension=federation_pb2.CASE_DIMENSION_THEME, key="Jan J"),
            "case_totals[0].key is not a code",
        ),
        (federation_pb2.CaseTotal(key="zorgplek"), "case_totals[0].dimension 0 is unknown"),
        (
            federation_pb2.CaseTotal(
                dimension=federation_pb2.CASE_DIMENSION_ALL, key="*", count=3, suppressed=True
            ),
            "case_totals[0] is suppressed but carries a count",
        ),
    ],
)
def test_case_totals_carry_codes_and_counts_only(
    total: federation_pb2.CaseTotal, reason: str
) -> None:
    answer = federation_pb2.SignalsResponse(node_id=HL, case_totals=[total])
    with pytest.raises(MalformedAnswerError, match=re.escape(reason)):
        check_answer(HL, answer)
