"""The signals report's words: one line per silent region, Dutch periods, suppressed cells
marked, and a page that fits A4 when printed."""

from __future__ import annotations

import html
import re
from datetime import UTC, datetime
from pathlib import Path

from schakel.v1 import federation_pb2

from gateway.collector.collect import Collection, Failure, Period, split_periods
from gateway.collector.directory import DirectoryNode
from gateway.collector.report import render_html
from tests.support import printing

JAN, APR = datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 4, 1, tzinfo=UTC)
MADE = datetime(2026, 7, 1, 10, 0, tzinfo=UTC)  # 12:00 in Amsterdam


def _answer(node_id: str) -> federation_pb2.SignalsResponse:
    answer = federation_pb2.SignalsResponse(node_id=node_id, k=10)
    answer.cells.add(theme="*", outcome="*", bottleneck="beschermd-wonen", count=12)
    answer.cells.add(theme="*", outcome="*", bottleneck="dagbesteding", suppressed=True)
    answer.case_totals.add(
        dimension=federation_pb2.CASE_DIMENSION_BOTTLENECK, key="beschermd-wonen", count=12
    )
    answer.case_totals.add(
        dimension=federation_pb2.CASE_DIMENSION_BOTTLENECK, key="dagbesteding", suppressed=True
    )
    answer.case_totals.add(
        dimension=federation_pb2.CASE_DIMENSION_THEME,
        key="verward-gedrag-veiligheidsrisico",
        count=17,
    )
    return answer


def _collection() -> Collection:
    periods = split_periods(JAN, APR, monthly=True)
    overall = Period(JAN, APR)
    flaky = DirectoryNode("zvh-flevoland", "f:1", "Flevoland")
    good = DirectoryNode("zvh-utrecht", "u:1", "Utrecht")
    collection = Collection([good, flaky], periods, overall=overall)
    for period in [*periods, overall]:
        collection.answers[("zvh-utrecht", period)] = _answer("zvh-utrecht")
    for period in periods[:2]:
        collection.answers[("zvh-flevoland", period)] = _answer("zvh-flevoland")
    collection.failures += [
        Failure(flaky, periods[2], "DEADLINE_EXCEEDED: deadline exceeded after 10s"),
        Failure(flaky, overall, "DEADLINE_EXCEEDED: deadline exceeded after 10s"),
    ]
    return collection


def _text(page: str) -> str:
    words = re.sub(r"<[^>]+>", " ", re.sub(r"(?s)<svg.*?</svg>", " ", page))
    return " ".join(html.unescape(words).split())


def test_a_region_missing_one_month_gets_one_dutch_line() -> None:
    text = _text(render_html(_collection(), MADE))
    assert "Periode: 1 januari 2026 t/m 31 maart 2026 · gemaakt op 1 juli 2026, 12:00" in text
    assert "Flevoland (zvh-flevoland) antwoordde niet op tijd en ontbreekt voor mrt 2026." in text
    assert text.count("zvh-flevoland") == 1
    assert "DEADLINE_EXCEEDED" not in text and "deadline exceeded" not in text
    assert "1 van de 2 regio's antwoordden voor de hele periode" in text


def test_codes_become_words_and_suppression_is_marked() -> None:
    page = render_html(_collection(), MADE)
    text = _text(page)
    assert "Regio Beschermd wonen Dagbesteding Utrecht 12 afgeschermd" in text
    assert "Thema's per regio Regio Verward gedrag veiligheidsrisico Utrecht 17" in text
    assert "Flevoland geen antwoord" in text  # no answer for the whole range
    assert '<td class="afgeschermd">afgeschermd</td>' in page
    for code in ("beschermd-wonen", "PHASE_", "suppressed", "CASE_DIMENSION"):
        assert code not in text, code
    charts = page[page.index("<svg") :]
    assert "Flevoland: casussen per knelpunt" in charts  # it answered two of three months
    assert "jan 2026" in charts and "geen antwoord" in charts


def test_the_printed_page_fits_a4(tmp_path: Path) -> None:
    page = tmp_path / "signals.html"
    page.write_text(render_html(_collection(), MADE), encoding="utf-8")
    with printing.chromium() as chromium:
        assert printing.printed_overflow(chromium, page) == 0
