"""Loading declared mappings (YAML or TOML) with errors that point at the bad entry."""

from __future__ import annotations

import re
import tomllib
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

import yaml

from adapters.fields import FieldType

CATEGORY = re.compile(r"[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*")
FIELD_NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")
IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")


class MappingError(ValueError):
    """A declared mapping is malformed; the message names the file and the entry."""


def load_document(path: Path) -> dict[str, Any]:
    """Read a mapping file: ``.yaml``/``.yml`` or ``.toml``."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise MappingError(f"cannot read mapping {path}: {exc.strerror}") from None
    try:
        if path.suffix == ".toml":
            data: object = tomllib.loads(text)
        elif path.suffix in (".yaml", ".yml"):
            data = yaml.safe_load(text)
        else:
            raise MappingError(f"{path}: a mapping must be a .yaml, .yml or .toml file")
    except (yaml.YAMLError, tomllib.TOMLDecodeError) as exc:
        raise MappingError(f"{path}: not valid {path.suffix[1:].upper()}: {exc}") from None
    if not isinstance(data, dict):
        raise MappingError(f"{path}: the top level must be a mapping of keys to values")
    return data


class Reader:
    """Typed access to one level of a mapping document, with located errors."""

    def __init__(self, data: object, where: str) -> None:
        """Wrap ``data``, which must be a mapping; ``where`` names it in errors."""
        if not isinstance(data, Mapping):
            raise MappingError(f"{where}: must be a mapping of keys to values")
        self.data: Mapping[str, Any] = data
        self.where = where

    def only(self, allowed: Collection[str]) -> None:
        """Refuse keys outside ``allowed`` (typos would otherwise be silently ignored)."""
        unknown = sorted(set(self.data) - set(allowed))
        if unknown:
            raise MappingError(f"{self.where}: unknown key(s) {unknown}; known: {sorted(allowed)}")

    def sub(self, key: str) -> Reader:
        """The nested mapping under ``key``."""
        if key not in self.data:
            raise MappingError(f"{self.where}: missing required key {key!r}")
        return Reader(self.data[key], f"{self.where}.{key}")

    def text(
        self, key: str, *, pattern: re.Pattern[str] | None = None, default: str | None = None
    ) -> str:
        """A required (or defaulted) string, optionally matching ``pattern``."""
        value = self.data.get(key, default)
        if value is None:
            raise MappingError(f"{self.where}: missing required key {key!r}")
        if not isinstance(value, str) or not value.strip():
            raise MappingError(f"{self.where}.{key}: must be a non-empty string")
        if pattern is not None and not pattern.fullmatch(value):
            raise MappingError(f"{self.where}.{key}: {value!r} must match {pattern.pattern}")
        return value

    def optional_text(self, key: str) -> str | None:
        """A string or None when absent."""
        if key not in self.data:
            return None
        return self.text(key)

    def field_type(self, key: str = "type") -> FieldType:
        """A declared field type."""
        value = self.text(key)
        try:
            return FieldType(value)
        except ValueError:
            known = ", ".join(t.value for t in FieldType)
            raise MappingError(f"{self.where}.{key}: {value!r} is not one of {known}") from None

    def string_list(self, key: str) -> tuple[str, ...]:
        """An optional list of strings (empty when absent)."""
        value = self.data.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise MappingError(f"{self.where}.{key}: must be a list of non-empty strings")
        return tuple(value)

    def items(self) -> list[tuple[str, Reader]]:
        """Each key with its nested mapping."""
        return [(str(k), Reader(v, f"{self.where}.{k}")) for k, v in self.data.items()]
