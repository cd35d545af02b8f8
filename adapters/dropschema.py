"""The declared shape of a file drop: which exports arrive, in which format, with which fields.

A schema (YAML or TOML) names, per export, the file pattern, the format, the
identifier column and the typed fact fields. :meth:`DropSchema.load`
validates it whole before the adapter reads a single file.

Example schema::

    version: 1
    contact: zvh-loket@gemeente.example
    exports:
      huisvesting:
        pattern: "huisvesting_*.csv"
        format: csv
        delimiter: ";"
        mode: snapshot          # each file replaces this export's records
        id: {column: bsn, type: bsn}
        category: sociaal.huisvesting
        fields:
          status: {column: status, type: code, required: true,
                   values: [dakloos, dreigend-dakloos, huurachterstand, urgentie]}
          sinds: {column: sinds, type: date}
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from adapters.fields import FieldType, FieldValueError, check_contact
from adapters.mapping import CATEGORY, FIELD_NAME, MappingError, Reader, load_document
from policy.pseudonyms import PseudonymError
from policy.pseudonyms.identifiers import check_id_type


class FileFormat(StrEnum):
    """How an export file is laid out."""

    CSV = "csv"
    JSONL = "jsonl"


class Mode(StrEnum):
    """What a new file of an export means for the records of earlier files."""

    SNAPSHOT = "snapshot"
    """The file is the full current state: it replaces the export's records."""
    APPEND = "append"
    """The file adds records to those of earlier files."""


@dataclass(frozen=True)
class ExportField:
    """One fact field of an export: name, source column, type, value set, required."""

    name: str
    column: str
    type: FieldType
    values: frozenset[str]
    required: bool


@dataclass(frozen=True)
class ExportSchema:
    """The declared shape of one periodic export."""

    name: str
    pattern: str
    format: FileFormat
    delimiter: str
    mode: Mode
    id_column: str
    id_type: str
    category: str
    fields: tuple[ExportField, ...]

    @property
    def columns(self) -> set[str]:
        """Every column the export must have."""
        return {self.id_column} | {f.column for f in self.fields}


@dataclass(frozen=True)
class DropSchema:
    """A validated file-drop schema: the contact handle and the exports."""

    contact: str
    exports: Mapping[str, ExportSchema]

    @classmethod
    def load(cls, path: Path) -> DropSchema:
        """Load and validate a schema file (``.yaml``, ``.yml`` or ``.toml``)."""
        return cls.from_dict(load_document(path), str(path))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "schema") -> DropSchema:
        """Validate a parsed schema document; ``source`` names it in errors."""
        top = Reader(data, source)
        top.only({"version", "contact", "exports"})
        if top.data.get("version") != 1:
            raise MappingError(f"{source}.version: must be 1")
        try:
            contact = check_contact(top.text("contact"), f"{source}.contact")
        except FieldValueError as exc:
            raise MappingError(str(exc)) from None
        exports: dict[str, ExportSchema] = {}
        for name, exp in top.sub("exports").items():
            exports[name] = _export(name, exp)
        if not exports:
            raise MappingError(f"{source}.exports: declare at least one export")
        patterns = [e.pattern for e in exports.values()]
        if len(set(patterns)) != len(patterns):
            raise MappingError(f"{source}.exports: two exports share a file pattern")
        return cls(contact, exports)

    def export_for(self, file_name: str) -> ExportSchema | None:
        """The export whose pattern matches ``file_name``, if any."""
        for export in self.exports.values():
            if fnmatch.fnmatchcase(file_name, export.pattern):
                return export
        return None


def _choice(reader: Reader, key: str, enum: type[StrEnum], default: str) -> str:
    value = reader.text(key, default=default)
    known = [m.value for m in enum]
    if value not in known:
        raise MappingError(f"{reader.where}.{key}: {value!r} is not one of {', '.join(known)}")
    return value


def _export(name: str, exp: Reader) -> ExportSchema:
    if not FIELD_NAME.fullmatch(name):
        raise MappingError(f"{exp.where}: {name!r} is not an export name")
    exp.only({"pattern", "format", "delimiter", "mode", "id", "category", "fields"})
    pattern = exp.text("pattern")
    if "/" in pattern or "\\" in pattern:
        raise MappingError(f"{exp.where}.pattern: a file name pattern, not a path")
    fmt = FileFormat(_choice(exp, "format", FileFormat, "csv"))
    delimiter = exp.text("delimiter", default=",")
    if len(delimiter) != 1:
        raise MappingError(f"{exp.where}.delimiter: must be one character")
    ident = exp.sub("id")
    ident.only({"column", "type"})
    category = exp.text("category")
    if not CATEGORY.fullmatch(category):
        raise MappingError(f"{exp.where}.category: {category!r} is not a fact category name")
    fields = []
    for fname, spec in exp.sub("fields").items():
        if not FIELD_NAME.fullmatch(fname):
            raise MappingError(f"{spec.where}: {fname!r} is not a field name")
        spec.only({"column", "type", "values", "required"})
        ftype = spec.field_type()
        values = frozenset(spec.string_list("values"))
        if values and ftype is not FieldType.CODE:
            raise MappingError(f"{spec.where}.values: only a code field has a value set")
        required = spec.data.get("required", False)
        if not isinstance(required, bool):
            raise MappingError(f"{spec.where}.required: must be true or false")
        fields.append(ExportField(fname, spec.text("column"), ftype, values, required))
    if not fields:
        raise MappingError(f"{exp.where}.fields: declare at least one field")
    id_type = ident.text("type", default="bsn")
    try:
        check_id_type(id_type)
    except PseudonymError as exc:
        raise MappingError(f"{ident.where}.type: {exc}") from None
    return ExportSchema(
        name=name,
        pattern=pattern,
        format=fmt,
        delimiter=delimiter,
        mode=Mode(_choice(exp, "mode", Mode, "snapshot")),
        id_column=ident.text("column"),
        id_type=id_type,
        category=category,
        fields=tuple(fields),
    )
