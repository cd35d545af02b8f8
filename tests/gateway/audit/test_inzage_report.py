"""The inzage report a citizen and a privacy officer read: Dutch words, a summary first,
refusals explained, proofs in an appendix, and a page that fits A4 when printed."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
from schakel.v1 import audit_pb2, common_pb2

from gateway.audit import inzage
from tests.support import printing
from tests.support.audit import Node, node, record

PSEUDONYM = "ab" * 32
MADE = datetime(2026, 3, 29, 1, 30, tzinfo=UTC)  # 03:30 in Amsterdam: summer time began at 01:00
MARCH_3 = int(datetime(2026, 3, 3, 13, 5, tzinfo=UTC).timestamp())  # 14:05 in Amsterdam


def _fill(n: Node) -> None:
    n.log.append_sync(
        record(PSEUDONYM, outcome=common_pb2.DECISION_OUTCOME_PARTIAL, start_seconds=MARCH_3)
    )
    refused = record(
        PSEUDONYM,
        outcome=common_pb2.DECISION_OUTCOME_DENY,
        peer="schakel://partner/zvh-haaglanden/ggz-delfland",
        start_seconds=MARCH_3 + 86400,
    )
    del refused.decision.released[:]
    refused.decision.withheld.add(category="detentie", reason="phase-not-allowed")
    n.log.append_sync(refused)
    triage = record(PSEUDONYM, start_seconds=MARCH_3 + 2 * 86400)
    triage.name = "schakel.v1.CaseService/StartTriage"
    triage.requester = "schakel://officer/zvh-haaglanden/procesregisseur"
    triage.provider = ""
    triage.phase = common_pb2.PHASE_TRIAGE
    triage.ClearField("decision")
    n.log.append_sync(triage)
    n.log.append_sync(record())  # someone else
    n.checkpointer.sign()
    n.cosign_latest()
    n.log.append_sync(record(PSEUDONYM, start_seconds=MARCH_3 + 3 * 86400))  # after the checkpoint


@pytest.fixture
def report(tmp_path: Path) -> inzage.SubjectReport:
    n = node(f"sqlite:///{tmp_path / 'node.db'}")
    _fill(n)
    made = inzage.build_report(n.checkpointer, PSEUDONYM)
    inzage.check_report(made.response, n.keys)
    return made


def _text(page: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", page))


def test_the_summary_comes_first_and_says_who_received_what(report: inzage.SubjectReport) -> None:
    page = inzage.render_html(report, generated=MADE)
    text = _text(page)
    assert "gemaakt op 29 maart 2026, 03:30 (Nederlandse tijd)" in text
    summary = text[text.index("Samenvatting") : text.index("Alle verwerkingen")]
    assert "bevat 4 verwerkingen van uw gegevens, tussen 3 maart 2026 en 6 maart 2026" in summary
    assert (
        "Gemeente (gemeente-den-haag) ontving toezicht door justitie of reclassering, 2 keer "
        "tussen 3 maart 2026 en 6 maart 2026, in de fase casusoverleg, op grond van "
        "Wet gegevensverwerking door samenwerkingsverbanden (WGS)." in summary
    )
    assert "3 keer werd een verzoek geheel of deels geweigerd" in summary


def test_each_crossing_is_one_row_in_words_with_refusals_explained(
    report: inzage.SubjectReport,
) -> None:
    text = _text(inzage.render_html(report, generated=MADE))
    rows = text[text.index("Alle verwerkingen") : text.index("Wat betekent dit?")]
    assert "3 maart 2026, 14:05" in rows
    assert "gegevens opgevraagd" in rows and "doel: aanpak complexe casuïstiek" in rows
    assert "verstrekt door Politie (politie-haaglanden)" in rows
    assert "gezondheidsgegeven zonder toestemming (AVG art. 9)" in rows
    assert "detentie: niet toegestaan in deze fase van de casus" in rows
    assert "geweigerd" in rows and "deels toegestaan" in rows
    assert "triage gestart" in rows
    assert "procesregisseur van Zorg- en Veiligheidshuis zvh-haaglanden" in rows
    assert "“Onbekend” betekent dat het logboek bij deze verwerking geen beslissing" in rows


def test_no_codes_reach_the_readable_part(report: inzage.SubjectReport) -> None:
    page = inzage.render_html(report, generated=MADE)
    readable = page[: page.index('<section class="appendix">')]
    for code in (
        "PHASE_",
        "DECISION_OUTCOME",
        "schakel.v1.",
        "schakel://",
        "urn:",
        "art9-no-consent",
        "phase-not-allowed",
        "justitie.toezicht",
        "zorg.in_zorg",
        "2026-03-03",
        "T13:05",
        PSEUDONYM,
    ):
        assert code not in readable, code


def test_the_appendix_holds_every_proof_and_the_checkpoint(report: inzage.SubjectReport) -> None:
    page = inzage.render_html(report, generated=MADE)
    appendix = page[page.index('<section class="appendix">') :]
    assert PSEUDONYM in appendix
    assert report.response.checkpoint.root.hex() in appendix
    for proven in report.response.entries:
        assert proven.entry.leaf_hash.hex() in appendix
        assert all(h.hex() in appendix for h in proven.proof.hashes)
    assert "nieuwer dan de checkpoint" in appendix
    assert report.pending[0].leaf_hash.hex() in appendix


def test_values_are_escaped(report: inzage.SubjectReport) -> None:
    proven = report.response.entries[0].entry
    proven.record.decision.legal_basis.code = "<script>alert(1)</script>"
    page = inzage.render_html(report, generated=MADE)
    assert "<script>" not in page and "&lt;script&gt;" in page


def test_an_erased_record_is_named_as_erased(report: inzage.SubjectReport) -> None:
    entry = report.response.entries[0].entry
    entry.ClearField("record")
    entry.erased = True
    text = _text(inzage.render_html(report, generated=MADE))
    assert "verwijderd na afloop van de bewaartermijn" in text


def test_an_empty_report_says_so() -> None:
    empty = inzage.SubjectReport(
        audit_pb2.SubjectReportResponse(
            data_subject_id=PSEUDONYM,
            checkpoint=audit_pb2.SignedCheckpoint(note=b"zvh-haaglanden\n0\nAAAA\n"),
        )
    )
    text = _text(inzage.render_html(empty, generated=MADE))
    assert "bevat geen verwerkingen van uw gegevens" in text


def test_the_printed_page_fits_a4_and_is_shot(report: inzage.SubjectReport, tmp_path: Path) -> None:
    page = tmp_path / "inzage.html"
    page.write_text(inzage.render_html(report, generated=MADE), encoding="utf-8")
    with printing.chromium() as chromium:
        assert printing.printed_overflow(chromium, page) == 0
        printing.pdf(chromium, page, tmp_path / "inzage.pdf")
        printing.screenshot(chromium, page, tmp_path / "inzage.png")
    assert (tmp_path / "inzage.pdf").read_bytes().startswith(b"%PDF")
    pdf = (tmp_path / "inzage.pdf").read_bytes()
    assert re.search(rb"/MediaBox \[0 0 59[45][.0-9]* 84[12]", pdf)  # A4: 595 x 842 points
    assert (tmp_path / "inzage.png").stat().st_size > 10_000
