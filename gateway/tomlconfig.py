"""Reading a TOML file into typed, frozen dataclasses, with environment overrides.

Every key maps onto a dataclass field; unknown keys and wrong types are
errors naming the key. ``SCHAKEL_<SECTION>__<KEY>=value`` overrides
``<section>.<key>`` (case-insensitive; ``__`` separates levels), converted
to the field's type. :mod:`gateway.config` defines the node's sections on
top of this.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

ENV_PREFIX = "SCHAKEL_"
ENV_SEPARATOR = "__"


class ConfigError(ValueError):
    """The configuration is unusable; the message names the source and the key."""


def env_overrides(environ: Mapping[str, str]) -> dict[tuple[str, ...], tuple[str, str]]:
    """Dotted key path -> (env var name, value), for every ``SCHAKEL_A__B`` variable."""
    found: dict[tuple[str, ...], tuple[str, str]] = {}
    for name, value in environ.items():
        if name.upper().startswith(ENV_PREFIX) and ENV_SEPARATOR in name:
            keys = tuple(k.lower() for k in name[len(ENV_PREFIX) :].split(ENV_SEPARATOR))
            found[keys] = (name, value)
    return found


class TableLoader:
    """Builds dataclasses from TOML tables, applying overrides and naming bad keys."""

    def __init__(
        self, source: str, base: Path, overrides: dict[tuple[str, ...], tuple[str, str]]
    ) -> None:
        self.source = source
        self.base = base
        self.overrides = overrides
        self.used: set[tuple[str, ...]] = set()
        self.env_name: str | None = None
        self.origins: dict[str, str] = {}
        """Dotted key -> the environment variable that set it."""

    def error(self, key: str, message: str) -> ConfigError:
        if self.env_name is not None:
            return ConfigError(f"{self.env_name} (environment override of {key}): {message}")
        return ConfigError(f"{self.source}: {key}: {message}")

    def build(self, cls: type[Any], table: object, key: str) -> Any:
        if not isinstance(table, dict):
            return self._raise_type(key, "a table", table)
        hints = typing.get_type_hints(cls)
        fields = [f for f in dataclasses.fields(cls) if not f.metadata.get("internal")]
        for unknown in sorted(set(table) - {f.name for f in fields}):
            raise self.error(_join(key, unknown), "unknown key")
        prefix = tuple(key.split(".")) if key else ()
        values: dict[str, Any] = {}
        for f in fields:
            sub = _join(key, f.name)
            override = self.overrides.get((*prefix, f.name))
            if override is not None:
                self.used.add((*prefix, f.name))
                self.origins[sub] = override[0]
                values[f.name] = self._from_env(hints[f.name], sub, *override)
            elif f.name in table:
                values[f.name] = self._convert(hints[f.name], table[f.name], sub)
            elif dataclasses.is_dataclass(_strip_optional(hints[f.name])) and _has_override_under(
                self.overrides, (*prefix, f.name)
            ):
                values[f.name] = self.build(_strip_optional(hints[f.name]), {}, sub)
            elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise self.error(sub, "missing (required)")
            elif isinstance(f.default, Path):
                # A default path is relative to the config file, like a written one.
                values[f.name] = self._convert(hints[f.name], str(f.default), sub)
        return cls(**values)

    def check_unused_overrides(self) -> None:
        for keys, (name, _value) in sorted(self.overrides.items()):
            if keys not in self.used:
                raise ConfigError(f"{name}: unknown key {'.'.join(keys)} (environment override)")

    def _from_env(self, hint: Any, key: str, name: str, text: str) -> Any:
        target = _strip_optional(hint)
        if target is Path and not text.strip() and target is not hint:
            return None
        self.env_name = name
        try:
            value: Any = text
            if target is int:
                if not text.strip().lstrip("-").isdigit():
                    raise self.error(key, f"{text!r} is not an integer")
                value = int(text)
            elif target is bool:
                lowered = text.strip().lower()
                if lowered not in {"true", "false", "1", "0"}:
                    raise self.error(key, f"{text!r} is not true or false")
                value = lowered in {"true", "1"}
            elif typing.get_origin(target) is list:
                value = [part.strip() for part in text.split(",") if part.strip()]
            return self._convert(hint, value, key)
        finally:
            self.env_name = None

    def _convert(self, hint: Any, value: object, key: str) -> Any:
        target = _strip_optional(hint)
        if dataclasses.is_dataclass(target):
            return self.build(typing.cast(type[Any], target), value, key)
        origin = typing.get_origin(target)
        if origin is list:
            (item,) = typing.get_args(target)
            if not isinstance(value, list):
                return self._raise_type(key, "a list", value)
            return [self._convert(item, v, f"{key}[{i}]") for i, v in enumerate(value)]
        if target is Path:
            if not isinstance(value, str) or not value:
                return self._raise_type(key, "a non-empty path string", value)
            path = Path(value).expanduser()
            return path if path.is_absolute() else self.base / path
        if target is bool:
            if not isinstance(value, bool):
                return self._raise_type(key, "true or false", value)
            return value
        if target is int:
            if isinstance(value, bool) or not isinstance(value, int):
                return self._raise_type(key, "an integer", value)
            return value
        if target is str:
            if not isinstance(value, str):
                return self._raise_type(key, "a string", value)
            return value
        raise self.error(key, f"unsupported field type {target!r}")

    def _raise_type(self, key: str, wanted: str, value: object) -> Any:
        raise self.error(key, f"must be {wanted}, not {type(value).__name__}")


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _has_override_under(
    overrides: Mapping[tuple[str, ...], object], prefix: tuple[str, ...]
) -> bool:
    return any(keys[: len(prefix)] == prefix for keys in overrides)


def _strip_optional(hint: Any) -> Any:
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return hint
