"""Sample inzage and signals reports with made-up numbers, and their screenshots.

``python -m gateway.dev.report_samples docs/images`` (``make report-samples``)
writes ``inzage.html`` and ``signals.html`` and, with Debian's chromium on
the path, ``inzage.png`` and ``signals.png`` at 1280 px wide: the pictures
in the README and docs/reports.md. The inzage comes from a real audit log
(SQLite in a temporary folder) with records shaped like the node's own;
the signals from real suppression of made-up counts, one region silent.
"""

from __future__ import annotations

import argparse
import hashlib
import secrets
import shutil
import subprocess
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

from schakel.v1 import audit_pb2, common_pb2, federation_pb2

from gateway.audit import inzage, notes
from gateway.audit.checkpoint import Checkpointer
from gateway.audit.store import AuditLog
from gateway.cases import SignalCount
from gateway.cases.case_totals import suppress_case_totals
from gateway.cases.suppression import suppress
from gateway.collector.collect import Collection, Failure, Period, split_periods
from gateway.collector.directory import DirectoryNode
from gateway.collector.report import render_html as render_signals
from gateway.flows.signalering import to_response
from gateway.storage import make_engine, migrate
from policy.vocabulary import Phase

NODE = "zvh-haaglanden"
MADE = datetime(2026, 4, 2, 9, 15, tzinfo=UTC)
PSEUDONYM = hashlib.sha256(b"sample subject").hexdigest()
_REGIE = f"schakel://officer/{NODE}/procesregisseur"

# (day in March, operation, requester, provider, phase, outcome, released, withheld, basis)
_CROSSINGS: list[tuple[int, str, str, str, int, int, list[str], list[tuple[str, str]], str]] = [
    (
        2,
        "PartnerService/SubmitReferral",
        f"schakel://partner/{NODE}/politie-haaglanden",
        f"schakel://partner/{NODE}/politie-haaglanden",
        common_pb2.PHASE_AANMELDING,
        common_pb2.DECISION_OUTCOME_ALLOW,
        ["aanmelding"],
        [],
        "WGS",
    ),
    (
        3,
        "CaseService/RunHitNoHit",
        _REGIE,
        "",
        common_pb2.PHASE_AANMELDING,
        common_pb2.DECISION_OUTCOME_ALLOW,
        ["bekend"],
        [],
        "WGS",
    ),
    (3, "CaseService/StartTriage", _REGIE, "", common_pb2.PHASE_TRIAGE, 0, [], [], ""),
    (
        9,
        "FederationService/AskParticipant",
        _REGIE,
        f"schakel://partner/{NODE}/ggz-parnassia",
        common_pb2.PHASE_CASUSOVERLEG,
        common_pb2.DECISION_OUTCOME_PARTIAL,
        ["sociaal.huisvesting"],
        [("zorg.in_zorg", "condition-unmet:ground")],
        "AVG-6.1e",
    ),
    (
        10,
        "FederationService/DeliverFacts",
        f"schakel://partner/{NODE}/gemeente-den-haag",
        f"schakel://partner/{NODE}/reclassering-haaglanden",
        common_pb2.PHASE_CASUSOVERLEG,
        common_pb2.DECISION_OUTCOME_ALLOW,
        ["justitie.toezicht"],
        [],
        "Wjsg",
    ),
    (
        11,
        "PartnerService/RequestFacts",
        f"schakel://partner/{NODE}/woningcorporatie-staedion",
        f"schakel://partner/{NODE}/politie-haaglanden",
        common_pb2.PHASE_CASUSOVERLEG,
        common_pb2.DECISION_OUTCOME_DENY,
        [],
        [("justitie.antecedenten", "no-rule")],
        "",
    ),
    (
        30,
        "CaseService/CloseCase",
        _REGIE,
        "",
        common_pb2.PHASE_AFSCHALING,
        common_pb2.DECISION_OUTCOME_ALLOW,
        ["uitkomst"],
        [],
        "WGS",
    ),
]


def _record(day: int, crossing: tuple[object, ...]) -> audit_pb2.AuditRecord:
    _, name, requester, provider, phase, outcome, released, withheld, basis = crossing
    start = datetime(2026, 3, day, 10, 30, tzinfo=UTC)
    record = audit_pb2.AuditRecord(
        trace_id=secrets.token_hex(16),
        span_id=secrets.token_hex(8),
        name=f"schakel.v1.{name}",
        status=audit_pb2.SPAN_STATUS_OK,
        processing_activity_id="urn:nl:zvh:verwerkingsregister:complexe-casuistiek",
        purpose="zvh.complexe-casuistiek",
        data_subject_id=PSEUDONYM,
        data_subject_id_type="schakel-pseudonym/v1",
        foreign_operation_processor=str(requester),
        requester=str(requester),
        provider=str(provider),
        phase=phase,  # type: ignore[arg-type]
        case_ref=common_pb2.CaseRef(node_id=NODE, case_id="c-0001"),
    )
    record.start_time.FromDatetime(start)
    record.end_time.FromDatetime(start + timedelta(seconds=1))
    record.decision.outcome = outcome  # type: ignore[assignment]
    record.decision.released.extend(released)  # type: ignore[arg-type]
    for category, reason in withheld:  # type: ignore[attr-defined]
        record.decision.withheld.add(category=category, reason=reason)
    record.decision.legal_basis.code = str(basis)
    return record


def inzage_sample(folder: Path) -> str:
    """The inzage page of a made-up person, from a real log with a cosigned checkpoint."""
    engine = make_engine(f"sqlite:///{folder / 'sample.db'}")
    migrate(engine)
    log = AuditLog(engine)
    signer = notes.Signer.generate(NODE)
    witness = notes.Signer.generate("zvh-rotterdam-rijnmond", notes.COSIGNATURE_V1)
    checkpointer = Checkpointer(
        log, signer, every_records=1000, witnesses=[witness.verifier()], quorum=1
    )
    for crossing in _CROSSINGS:
        log.append_sync(_record(int(str(crossing[0])), crossing))
    latest = checkpointer.sign()
    text = notes.parse_note(latest.note).text
    checkpointer.add_cosignature(latest.size, notes.cosign(text, witness, int(MADE.timestamp())))
    report = inzage.build_report(checkpointer, PSEUDONYM)
    log.close()
    return inzage.render_html(report, generated=MADE)


_REGIONS = [
    ("zvh-haaglanden", "Haaglanden", 1.0),
    ("zvh-rotterdam-rijnmond", "Rotterdam-Rijnmond", 1.6),
    ("zvh-utrecht", "Utrecht", 0.7),
    ("zvh-twente", "Twente", 0.4),
]
_PLAN = [  # theme, phase, outcome, tag, base count
    ("complexe-casuistiek", Phase.CASUSOVERLEG, "", "huisvesting", 24),
    ("complexe-casuistiek", Phase.CASUSOVERLEG, "", "schulden", 14),
    ("complexe-casuistiek", Phase.TRIAGE, "", "wachtlijst-ggz", 11),
    ("complexe-casuistiek", Phase.AANMELDING, "", "", 18),
    ("nazorg-ex-gedetineerden", Phase.CASUSOVERLEG, "", "huisvesting", 12),
    ("nazorg-ex-gedetineerden", Phase.AFSCHALING, "doelen-bereikt", "", 13),
    ("huiselijk-geweld", Phase.CASUSOVERLEG, "", "zorgplek", 6),
]


def _answer(node_id: str, scale: float, months: float) -> federation_pb2.SignalsResponse:
    cells = [
        SignalCount(theme, phase, outcome, tag, round(n * scale * months))
        for theme, phase, outcome, tag, n in _PLAN
    ]
    table = suppress(cells, 10)
    counts: dict[tuple[str, str], int] = {}
    for cell in cells:
        # Two tags per case for a fifth of the casusoverleg cells: cases < entries.
        cases = cell.count - (cell.count // 5 if cell.phase is Phase.CASUSOVERLEG else 0)
        for key in (("theme", cell.theme), ("phase", cell.phase.value), ("outcome", cell.outcome)):
            counts[key] = counts.get(key, 0) + cases
        counts[("all", "*")] = counts.get(("all", "*"), 0) + cases
    return to_response(node_id, table, suppress_case_totals(counts, table))


def signals_sample() -> str:
    """The signals page of four made-up regions over three months, one of them silent."""
    start, end = datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 4, 1, tzinfo=UTC)
    periods = split_periods(start, end, monthly=True)
    overall = Period(start, end)
    nodes = [DirectoryNode(n, f"{n}.example:50051", region) for n, region, _ in _REGIONS]
    collection = Collection(nodes, periods, overall=overall)
    for (node_id, _, scale), node in zip(_REGIONS, nodes, strict=True):
        if node_id == "zvh-twente":
            for period in [*periods, overall]:
                collection.failures.append(Failure(node, period, "DEADLINE_EXCEEDED"))
            continue
        for i, period in enumerate(periods):
            collection.answers[(node_id, period)] = _answer(node_id, scale * (0.8 + 0.2 * i), 1)
        collection.answers[(node_id, overall)] = _answer(node_id, scale, 1.6)
    return render_signals(collection, MADE)


def screenshot(page: Path, out: Path, height: int) -> bool:
    """``page`` as a PNG 1280 px wide with chromium; False when there is no chromium."""
    chromium = shutil.which("chromium")
    if chromium is None:
        return False
    subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            f"--window-size=1280,{height}",
            f"--screenshot={out.resolve()}",
            page.resolve().as_uri(),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    _crop(out)
    return True


def _crop(png: Path) -> None:
    """Cut the blank page below the content, leaving a margin."""
    from PIL import Image, ImageChops  # noqa: PLC0415 - pillow comes with matplotlib

    with Image.open(png) as image:
        rgb = image.convert("RGB")
    box = ImageChops.difference(rgb, Image.new("RGB", rgb.size, "white")).getbbox()
    if box is not None:
        page = rgb.crop((0, 0, rgb.width, min(rgb.height, box[3] + 24)))
        # A palette of 256 colours keeps the text sharp at a third of the size.
        page.quantize(256).save(png, optimize=True)


def main(argv: list[str] | None = None) -> int:
    """Write the two sample pages (and screenshots) into the folder given."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="folder for the pages and screenshots")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        pages = {"inzage": (inzage_sample(Path(tmp)), 2800), "signals": (signals_sample(), 4000)}
    for name, (html, height) in pages.items():
        page = args.out / f"{name}.html"
        page.write_text(html, encoding="utf-8")
        shot = screenshot(page, args.out / f"{name}.png", height)
        print(f"wrote {page}" + (f" and {name}.png" if shot else " (no chromium: no screenshot)"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
