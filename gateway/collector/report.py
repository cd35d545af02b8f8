"""The collector's report: a CSV of every cell and a self-contained HTML page with charts.

The HTML page has no script and loads nothing: its charts are inline SVG
drawn here. Both files name every node that did not answer.
"""

from __future__ import annotations

import csv
import html
from datetime import UTC, datetime
from pathlib import Path

from schakel.v1 import common_pb2, federation_pb2

from gateway.cases.suppression import ALL
from gateway.collector.collect import Collection

CSV_NAME = "signals.csv"
HTML_NAME = "signals.html"
SUPPRESSED = "suppressed"
NO_TAG = "(none)"
CSV_HEADER = (
    "node",
    "region",
    "period_start",
    "period_end",
    "theme",
    "phase",
    "outcome",
    "bottleneck",
    "count",
)
_PALETTE = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
)


def _phase(value: common_pb2.Phase.ValueType) -> str:
    if value == common_pb2.PHASE_UNSPECIFIED:
        return ALL
    return common_pb2.Phase.Name(value).removeprefix("PHASE_").lower()


def _day(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def write_csv(collection: Collection, path: Path) -> None:
    """One row per cell and node and period; nodes that did not answer in a ``#`` footer."""
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(CSV_HEADER)
        for node in collection.nodes:
            for period in collection.periods:
                answer = collection.answers.get((node.node_id, period))
                if answer is None:
                    continue
                for cell in answer.cells:
                    writer.writerow(
                        (
                            node.node_id,
                            node.region,
                            _day(period.start),
                            _day(period.end),
                            cell.theme,
                            _phase(cell.phase),
                            cell.outcome,
                            cell.bottleneck,
                            SUPPRESSED if cell.suppressed else cell.count,
                        )
                    )
        if collection.failures:
            for failure in collection.failures:
                out.write(
                    f"# not answered: {failure.node.node_id} for {failure.period.label}: "
                    f"{failure.reason}\n"
                )
        else:
            out.write("# every node answered for every period\n")


def tag_totals(answer: federation_pb2.SignalsResponse) -> dict[str, int | None]:
    """Tag -> total count over all themes, None when suppressed; absent tags have 0."""
    return {
        cell.bottleneck: None if cell.suppressed else cell.count
        for cell in answer.cells
        if cell.theme == ALL and cell.outcome == ALL and cell.bottleneck != ALL
    }


def _tags(collection: Collection) -> list[str]:
    found = {tag for answer in collection.answers.values() for tag in tag_totals(answer)}
    return sorted(found)


def _tag_name(tag: str) -> str:
    return tag or NO_TAG


_CHART_HEIGHT = 180
_BAR = 12
_LEFT = 48


def _chart(collection: Collection, node_id: str, tags: list[str]) -> str:
    """Grouped bars: one group per period, one bar per tag; dashed stubs for suppressed ones."""
    data = {
        period: tag_totals(answer)
        for period in collection.periods
        if (answer := collection.answers.get((node_id, period))) is not None
    }
    top = max([v for totals in data.values() for v in totals.values() if v] + [1])
    group = max(len(tags), 1) * _BAR + 16
    width = _LEFT + group * len(collection.periods) + 10
    height = _CHART_HEIGHT + 40
    base = _CHART_HEIGHT + 10
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'role="img" aria-label="bottlenecks of {html.escape(node_id)} per period">',
        f'<line x1="{_LEFT}" y1="{base}" x2="{width - 5}" y2="{base}" stroke="#333"/>',
        f'<text x="{_LEFT - 4}" y="14" font-size="10" text-anchor="end">{top}</text>',
        f'<text x="{_LEFT - 4}" y="{base}" font-size="10" text-anchor="end">0</text>',
    ]
    for p, period in enumerate(collection.periods):
        x0 = _LEFT + p * group + 8
        label = html.escape(period.label)
        parts.append(
            f'<text x="{x0 + (group - 16) / 2}" y="{base + 14}" font-size="10" '
            f'text-anchor="middle">{label}</text>'
        )
        totals = data.get(period)
        if totals is None:
            parts.append(
                f'<text x="{x0 + (group - 16) / 2}" y="{base - 6}" font-size="10" '
                f'text-anchor="middle" fill="#a00"><title>no answer</title>no answer</text>'
            )
            continue
        for t, tag in enumerate(tags):
            x = x0 + t * _BAR
            colour = _PALETTE[t % len(_PALETTE)]
            name = html.escape(_tag_name(tag))
            value = totals.get(tag, 0)
            if value is None:
                parts.append(
                    f'<rect x="{x}" y="{base - 8}" width="{_BAR - 2}" height="8" fill="none" '
                    f'stroke="{colour}" stroke-dasharray="2,2"><title>{name} {label}: '
                    f"{SUPPRESSED}</title></rect>"
                )
                continue
            h = round(value / top * (_CHART_HEIGHT - 10), 1)
            parts.append(
                f'<rect x="{x}" y="{base - h}" width="{_BAR - 2}" height="{h}" fill="{colour}">'
                f"<title>{name} {label}: {value}</title></rect>"
            )
    parts.append("</svg>")
    return "".join(parts)


def _legend(tags: list[str]) -> str:
    items = [
        f'<span class="key"><span class="swatch" style="background:{_PALETTE[i % len(_PALETTE)]}">'
        f"</span>{html.escape(_tag_name(tag))}</span>"
        for i, tag in enumerate(tags)
    ]
    items.append(
        '<span class="key"><span class="swatch stub"></span>suppressed (small cell or '
        "complementary)</span>"
    )
    return '<p class="legend">' + " ".join(items) + "</p>"


def _tag_table(collection: Collection, tag: str) -> str:
    head = "".join(f"<th>{html.escape(p.label)}</th>" for p in collection.periods)
    rows = []
    for node in collection.nodes:
        cells = []
        for period in collection.periods:
            answer = collection.answers.get((node.node_id, period))
            if answer is None:
                cells.append('<td class="missing">no answer</td>')
                continue
            value = tag_totals(answer).get(tag, 0)
            cells.append("<td>suppressed</td>" if value is None else f"<td>{value}</td>")
        rows.append(f"<tr><th>{html.escape(node.region)}</th>{''.join(cells)}</tr>")
    return (
        f"<h3>{html.escape(_tag_name(tag))}</h3><table><tr><th>region</th>{head}</tr>"
        f"{''.join(rows)}</table>"
    )


def _failures(collection: Collection) -> str:
    if not collection.failures:
        return "<p>Every node answered for every period.</p>"
    items = "".join(
        f"<li><b>{html.escape(f.node.node_id)}</b> ({html.escape(f.node.region)}), "
        f"{html.escape(f.period.label)}: {html.escape(f.reason)}</li>"
        for f in collection.failures
    )
    return f'<ul class="missing">{items}</ul>'


_STYLE = """
body { font-family: sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin-bottom: 1em; }
td, th { border: 1px solid #ccc; padding: 2px 8px; text-align: right; }
th:first-child { text-align: left; }
.missing { color: #a00; }
.key { margin-right: 1em; white-space: nowrap; }
.swatch { display: inline-block; width: 10px; height: 10px; margin-right: 4px; }
.stub { border: 1px dashed #555; }
"""


def render_html(collection: Collection, generated: datetime) -> str:
    """The report page: charts per region, tables per bottleneck, the nodes that did not answer."""
    tags = _tags(collection)
    first, last = collection.periods[0].start, collection.periods[-1].end
    ks = sorted({answer.k for answer in collection.answers.values()})
    charts = "".join(
        f"<h3>{html.escape(node.region)} <small>({html.escape(node.node_id)})</small></h3>"
        f"{_chart(collection, node.node_id, tags)}"
        for node in collection.nodes
    )
    tables = "".join(_tag_table(collection, tag) for tag in tags)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>Signalen: bottlenecks per region</title><style>{_STYLE}</style></head>
<body>
<h1>Signalen: bottlenecks per region</h1>
<p>Cases with each bottleneck tag, {first:%Y-%m-%d} to {last:%Y-%m-%d} (end exclusive),
per region and period. A case with several tags counts under each. Counts below the
threshold (k = {", ".join(map(str, ks)) or "-"}), and counts that would reveal them, are
suppressed by the nodes. Generated {_day(generated.replace(microsecond=0))}.</p>
<h2>Nodes that did not answer</h2>
{_failures(collection)}
<h2>Bottlenecks per region over time</h2>
{_legend(tags)}
{charts}
<h2>Bottleneck totals per region</h2>
{tables}
</body></html>
"""


def write_report(
    collection: Collection, out_dir: Path, generated: datetime | None = None
) -> tuple[Path, Path]:
    """Write ``signals.csv`` and ``signals.html`` into ``out_dir`` (created if needed)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path, html_path = out_dir / CSV_NAME, out_dir / HTML_NAME
    write_csv(collection, csv_path)
    html_path.write_text(render_html(collection, generated or datetime.now(UTC)), encoding="utf-8")
    return csv_path, html_path
