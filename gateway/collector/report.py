"""The collector's report: a CSV of every cell and a Dutch HTML page a stuurgroep reads.

The page has no script and loads nothing: its charts are inline SVG drawn by
matplotlib (:mod:`gateway.collector.charts`), its text a jinja2 template
with autoescaping. It counts cases, not tag entries (a case with two tags
is one case), marks every suppressed number as such, and gives one short
line per region that did not answer. The CSV keeps every cell as the nodes
sent it.
"""

from __future__ import annotations

import csv
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import jinja2
from schakel.v1 import common_pb2, federation_pb2

from gateway import labels
from gateway.cases.suppression import ALL
from gateway.collector import charts
from gateway.collector.charts import Bar, Series, Value
from gateway.collector.collect import Collection, Failure

CSV_NAME = "signals.csv"
HTML_NAME = "signals.html"
SUPPRESSED = "suppressed"
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
        failures = [f for f in collection.failures if f.period in collection.periods]
        if failures:
            for failure in failures:
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


_ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("gateway.collector", "templates"),
    autoescape=True,
    trim_blocks=True,
    lstrip_blocks=True,
    undefined=jinja2.StrictUndefined,
)
_DIMENSIONS = {
    "theme": federation_pb2.CASE_DIMENSION_THEME,
    "phase": federation_pb2.CASE_DIMENSION_PHASE,
    "outcome": federation_pb2.CASE_DIMENSION_OUTCOME,
    "bottleneck": federation_pb2.CASE_DIMENSION_BOTTLENECK,
}
_REASONS = {
    "UNAVAILABLE": "was niet bereikbaar",
    "DEADLINE_EXCEEDED": "antwoordde niet op tijd",
    "PERMISSION_DENIED": "weigerde de landelijke collector",
    "UNAUTHENTICATED": "herkende het certificaat van de collector niet",
    "UNIMPLEMENTED": "kent de vraag naar signalen niet",
    "malformed answer": "gaf een onbruikbaar antwoord",
}


def case_totals(answer: federation_pb2.SignalsResponse, dimension: str) -> dict[str, Bar]:
    """Key -> distinct cases of one dimension (theme, phase, outcome, bottleneck).

    An answer without case totals (a node before they existed) gives the
    cells' tag totals for the tags, which are case counts too, and nothing
    for the other dimensions.
    """
    wanted = _DIMENSIONS[dimension]
    found: dict[str, Bar] = {
        t.key: Value.SUPPRESSED if t.suppressed else t.count
        for t in answer.case_totals
        if t.dimension == wanted
    }
    if not found and dimension == "bottleneck":
        return {tag: Value.SUPPRESSED if n is None else n for tag, n in tag_totals(answer).items()}
    return found


def _key_words(dimension: str, key: str) -> str:
    if dimension == "bottleneck":
        return labels.bottleneck(key)
    if dimension == "phase":
        return labels.phase(key).capitalize()
    return labels.code_words(key)


@dataclass
class MatrixRow:
    """One region's row: its cases per value, or missing when it did not answer."""

    region: str
    node: str
    missing: bool
    cells: list[Bar]


@dataclass
class Matrix:
    """Regions by the values of one dimension."""

    columns: list[str]
    rows: list[MatrixRow]


def _matrix(collection: Collection, dimension: str) -> Matrix:
    """Regions by the values of one dimension, in cases over the whole range."""
    period = collection.whole
    rows: dict[str, dict[str, Bar]] = {}
    keys: set[str] = set()
    for node in collection.nodes:
        answer = collection.answers.get((node.node_id, period))
        if answer is None:
            rows[node.node_id] = {}
            continue
        rows[node.node_id] = case_totals(answer, dimension)
        keys.update(rows[node.node_id])
    order = (
        [p.value for p in labels.PHASES if p.value in keys]
        if dimension == "phase"
        else sorted(keys, key=lambda k: (k == "", k))
    )
    return Matrix(
        [_key_words(dimension, k) for k in order],
        [
            MatrixRow(
                node.region,
                node.node_id,
                (node.node_id, period) not in collection.answers,
                [rows[node.node_id].get(k, 0) for k in order],
            )
            for node in collection.nodes
        ],
    )


def _tags(collection: Collection) -> list[str]:
    found = {
        tag
        for (_node, period), answer in collection.answers.items()
        if period in collection.periods
        for tag in tag_totals(answer)
    }
    return sorted(found, key=lambda t: (t == "", t))


def _region_chart(collection: Collection, node_id: str, region: str, tags: list[str]) -> str:
    """Cases per tag over the periods of one region."""
    series = []
    for tag in tags:
        values: list[Bar] = []
        for period in collection.periods:
            answer = collection.answers.get((node_id, period))
            if answer is None:
                values.append(Value.MISSING)
                continue
            n = tag_totals(answer).get(tag, 0)
            values.append(Value.SUPPRESSED if n is None else n)
        series.append(Series(labels.bottleneck(tag), values))
    ks = [a.k for (n, _), a in collection.answers.items() if n == node_id] or [0]
    return charts.grouped_bars(
        [labels.period(p.start, p.end) for p in collection.periods],
        series,
        title=f"{region}: casussen per knelpunt",
        y_label="casussen",
        k=max(ks),
    )


def _phase_chart(collection: Collection) -> str:
    """Cases per phase per region over the whole range."""
    matrix = _matrix(collection, "phase")
    series = [
        Series(name, [Value.MISSING if r.missing else r.cells[i] for r in matrix.rows])
        for i, name in enumerate(matrix.columns)
    ]
    ks = [a.k for a in collection.answers.values()] or [0]
    return charts.grouped_bars(
        [r.region for r in matrix.rows],
        series,
        title="Casussen per fase, per regio",
        y_label="casussen",
        k=max(ks),
    )


def _silence(failures: list[Failure], collection: Collection) -> str:
    """One short Dutch line for one region's failures."""
    node = failures[0].node
    reasons = {f.reason.split(":", 1)[0] for f in failures}
    said = " en ".join(sorted(_REASONS.get(r, "gaf een fout") for r in reasons))
    months = [f.period for f in failures if f.period in collection.periods]
    if len(months) == len(collection.periods) or not months:
        when = "over de hele periode"
    else:
        when = "voor " + ", ".join(labels.period(p.start, p.end) for p in sorted(months))
    return f"{node.region} ({node.node_id}) {said} en ontbreekt {when}."


_MATRICES = (
    ("Knelpunten per regio", "bottleneck"),
    ("Thema's per regio", "theme"),
    ("Fasen per regio (aan het eind van de periode)", "phase"),
    ("Uitkomsten van afgesloten casussen per regio", "outcome"),
)


def render_html(collection: Collection, generated: datetime) -> str:
    """The report page: who did not answer, matrices of cases, charts per region."""
    first, last = collection.periods[0].start, collection.periods[-1].end
    by_node: dict[str, list[Failure]] = defaultdict(list)
    for failure in collection.failures:
        by_node[failure.node.node_id].append(failure)
    tags = _tags(collection)
    ks = sorted({answer.k for answer in collection.answers.values()})
    answered = [n for n in collection.nodes if n.node_id not in by_node]
    return _ENV.get_template("signals.html").render(
        range=labels.period(first, last),
        generated=labels.date_time(generated),
        k=", ".join(map(str, ks)) or "-",
        regions=len(collection.nodes),
        answered=len(answered),
        silent=[_silence(f, collection) for f in by_node.values()],
        monthly=len(collection.periods) > 1,
        matrices=[
            ("Knelpunten per regio", "bottleneck", _matrix(collection, "bottleneck")),
            ("Thema's per regio", "theme", _matrix(collection, "theme")),
            (
                "Fasen per regio (aan het eind van de periode)",
                "phase",
                _matrix(collection, "phase"),
            ),
            (
                "Uitkomsten van afgesloten casussen per regio",
                "outcome",
                _matrix(collection, "outcome"),
            ),
        ],
        phase_chart=_phase_chart(collection),
        charts=[
            _region_chart(collection, node.node_id, node.region, tags)
            for node in collection.nodes
            if node.node_id not in by_node or len(by_node[node.node_id]) < len(collection.periods)
        ],
        suppressed=Value.SUPPRESSED,
        missing=Value.MISSING,
    )


def write_report(
    collection: Collection, out_dir: Path, generated: datetime | None = None
) -> tuple[Path, Path]:
    """Write ``signals.csv`` and ``signals.html`` into ``out_dir`` (created if needed)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path, html_path = out_dir / CSV_NAME, out_dir / HTML_NAME
    write_csv(collection, csv_path)
    html_path.write_text(render_html(collection, generated or datetime.now(UTC)), encoding="utf-8")
    return csv_path, html_path
