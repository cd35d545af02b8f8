"""A posted form's values, read strictly: one value where one is meant, text only."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gateway.errors import InvalidInputError

MAX_VALUES = 64
"""The most values one field may carry (checkboxes of categories, participants, tags)."""


class Form:
    """The fields of a posted form; a file upload or a missing field is refused."""

    def __init__(self, data: Mapping[str, Any]) -> None:
        self._data = data

    def one(self, name: str, default: str | None = "") -> str:
        """The one text value of ``name`` (``default`` when absent; None makes it required)."""
        values = self.many(name)
        if not values:
            if default is None:
                raise InvalidInputError(f"the form field {name} is required")
            return default
        if len(values) > 1:
            raise InvalidInputError(f"the form field {name} takes one value")
        return values[0]

    def many(self, name: str) -> list[str]:
        """Every text value of ``name``, in form order."""
        getall = getattr(self._data, "getall", None)
        values = list(getall(name, [])) if getall is not None else []
        if len(values) > MAX_VALUES:
            raise InvalidInputError(f"the form field {name} takes at most {MAX_VALUES} values")
        if not all(isinstance(v, str) for v in values):
            raise InvalidInputError(f"the form field {name} must be text")
        return [v.strip() for v in values]
