"""Reading one export file: its rows parsed (CSV or JSON lines) and each validated into a fact.

A row that fails its export's schema keeps its reason and its raw values for
the quarantine file (partner-side data); the reason never quotes the
identifier. A file that cannot be read at all raises :class:`FileRefusedError`.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from schakel.v1 import common_pb2

from adapters.dropschema import ExportSchema, FileFormat
from adapters.fields import FieldValueError, to_fact_value
from policy.pseudonyms import PseudonymError, check_identifier


@dataclass
class Row:
    """One line of an export file: a fact when valid, else the reason it is quarantined."""

    line: int
    raw: Mapping[str, Any]
    id_value: str = field(repr=False, default="")
    fact: common_pb2.Fact | None = None
    reason: str = ""


class FileRefusedError(ValueError):
    """The file as a whole cannot be read under its export's schema."""


def read_rows(data: bytes, export: ExportSchema) -> Iterator[tuple[int, Mapping[str, Any] | None]]:
    """Yield ``(line, row)``; ``row`` is None for a line that is not a record at all."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise FileRefusedError("the file is not UTF-8 text") from None
    if export.format is FileFormat.CSV:
        reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=export.delimiter)
        header = set(reader.fieldnames or ())
        missing = sorted(export.columns - header)
        if missing:
            raise FileRefusedError(f"the header lacks column(s) {missing}")
        for row in reader:
            if None in row:
                yield reader.line_num, None
            else:
                yield reader.line_num, row
        return
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError:
            yield number, None
            continue
        yield number, value if isinstance(value, dict) else None


def validate(line: int, raw: Mapping[str, Any] | None, export: ExportSchema) -> Row:
    """Check one parsed row against ``export`` and build its fact, or give the reason why not."""
    if raw is None:
        return Row(line, {}, reason="not a record (bad JSON, or more cells than the header)")
    row = Row(line, raw)
    id_value = raw.get(export.id_column)
    if not isinstance(id_value, str):
        row.reason = f"column {export.id_column!r} is missing or not text"
        return row
    try:
        check_identifier(export.id_type, id_value.strip())
    except PseudonymError as exc:
        row.reason = f"column {export.id_column!r}: {exc}"
        return row
    fact = common_pb2.Fact(category=export.category)
    for spec in export.fields:
        value = raw.get(spec.column)
        if value is None or (isinstance(value, str) and not value.strip()):
            if spec.required:
                row.reason = f"column {spec.column!r} is required and empty"
                return row
            continue
        try:
            converted = to_fact_value(spec.type, value, f"column {spec.column!r}", spec.values)
        except FieldValueError as exc:
            row.reason = str(exc)
            return row
        fact.fields[spec.name].CopyFrom(converted)
    row.id_value = id_value.strip()
    row.fact = fact
    return row
