"""No BSN reaches an audit row, a log line, an error message or a report."""

from __future__ import annotations

import io
import json

import pytest
import sqlalchemy as sa

from gateway.audit import inzage, records
from gateway.audit.checkpoint import Checkpoints
from gateway.logging import configure_logging
from gateway.storage import metadata
from tests.support import audit_workload as workload
from tests.support.audit import node, record


def _all_cells(engine: sa.Engine) -> list[bytes]:
    cells: list[bytes] = []
    with engine.connect() as conn:
        for table in metadata.sorted_tables:
            if not table.name.startswith("audit_"):
                continue
            for row in conn.execute(sa.select(table)):
                for value in row:
                    if isinstance(value, (bytes, memoryview)):
                        cells.append(bytes(value))
                    elif value is not None:
                        cells.append(str(value).encode())
    return cells


def test_no_bsn_in_rows_logs_or_reports(db_url: str) -> None:
    stream = io.StringIO()
    configure_logging("debug", stream=stream)
    n = node(db_url)
    work = workload.run(n)
    leaky = record()
    bsn = next(iter(work.subjects))
    leaky.case_ref.case_id = f"zaak-{bsn}"
    with pytest.raises(records.RecordError) as refused:
        n.log.append_sync(leaky)
    assert "case_ref.case_id holds a BSN-shaped value" in str(refused.value)
    report = inzage.build_report(
        Checkpoints(n.log, witnesses=n.keys.witnesses, quorum=2), work.subjects[bsn]
    )
    assert len(report.response.entries) == 3
    outputs = [
        str(refused.value).encode(),
        stream.getvalue().encode(),
        inzage.render_text(report).encode(),
        inzage.render_html(report).encode(),
        report.response.SerializeToString(),
    ]
    cells = _all_cells(n.log.engine)
    assert len(cells) > 100
    assert json.loads(stream.getvalue().splitlines()[0])["component"].startswith("audit")
    for value in work.subjects:
        needle = value.encode()
        assert not any(needle in cell for cell in cells), "a BSN reached an audit row"
        assert not any(needle in out for out in outputs), "a BSN reached a log line or report"
    pseudonyms = [p.encode() for p in work.subjects.values()]
    assert all(any(p in cell for cell in cells) for p in pseudonyms)
    n.log.close()


@pytest.mark.parametrize(
    "field",
    ["name", "purpose", "requester", "foreign_operation_processor", "categories_asked", "rule_ids"],
)
def test_bsn_shaped_values_are_refused_in_every_string_field(field: str) -> None:
    r = record()
    value = "bsn 111222333"
    if field == "categories_asked":
        r.categories_asked.append(value)
    elif field == "rule_ids":
        r.decision.rule_ids.append(value)
    else:
        setattr(r, field, value)
    with pytest.raises(records.RecordError) as refused:
        records.validate(r)
    assert "111222333" not in str(refused.value)


def test_digits_inside_hex_tokens_are_not_mistaken_for_a_bsn() -> None:
    r = record()
    r.case_ref.case_id = "0f111222333a"
    records.validate(r)
    assert records.is_bsn_shaped("zaak 111222333")
    assert not records.is_bsn_shaped("zaak 111222334")
