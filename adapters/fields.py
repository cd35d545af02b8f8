"""Typed fact fields: how a partner's raw values become ``FactValue`` messages.

Both the SQL and the file-drop adapter declare each fact field with one of
the types below and convert through :func:`to_fact_value`. Errors name the
rule that was broken and never the value, because the value may be a BSN or
fact content that must not reach a log line.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Collection
from decimal import Decimal
from enum import StrEnum

from schakel.v1 import common_pb2

_CODE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/+-]{0,63}")
_EMAIL = re.compile(r"[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9.-]{1,190}\.[A-Za-z]{2,24}")
_PHONE = re.compile(r"\+?[0-9][0-9 ()-]{5,19}")
_ISO_DATE = re.compile(r"([0-9]{4})-([0-9]{2})(?:-([0-9]{2}))?")
_TRUE = frozenset({"true", "1", "ja", "yes", "j", "y"})
_FALSE = frozenset({"false", "0", "nee", "no", "n"})


class FieldType(StrEnum):
    """The declared type of one fact field."""

    CODE = "code"
    """A code from a value set (no free text): letters, digits and ``._:/+-``."""
    NUMBER = "number"
    """A whole number: a count or an amount in whole units."""
    BOOL = "bool"
    """Yes or no."""
    DATE = "date"
    """A calendar date (``YYYY-MM-DD``) or a month (``YYYY-MM``)."""
    CONTACT = "contact"
    """A contact handle: a function mailbox or a phone number."""


class FieldValueError(ValueError):
    """A raw value does not fit its declared field type. The message never holds the value."""


def check_code(value: str, what: str) -> str:
    """Return ``value`` if it is a code (no spaces, at most 64 characters)."""
    if not _CODE.fullmatch(value):
        raise FieldValueError(
            f"{what} must be a code of 1-64 letters, digits or '._:/+-', not free text"
        )
    return value


def check_contact(value: str, what: str) -> str:
    """Return ``value`` if it looks like a function mailbox or a phone number."""
    if not (_EMAIL.fullmatch(value) or _PHONE.fullmatch(value)):
        raise FieldValueError(f"{what} must be an e-mail address or a phone number")
    return value


def _as_date(raw: object, what: str) -> common_pb2.Date:
    if isinstance(raw, dt.datetime):
        raw = raw.date()
    if isinstance(raw, dt.date):
        return common_pb2.Date(year=raw.year, month=raw.month, day=raw.day)
    if isinstance(raw, str):
        match = _ISO_DATE.fullmatch(raw.strip())
        if match:
            year, month = int(match.group(1)), int(match.group(2))
            day = int(match.group(3)) if match.group(3) else 0
            try:
                dt.date(year, month, day or 1)
            except ValueError:
                raise FieldValueError(f"{what} is not a real calendar date") from None
            return common_pb2.Date(year=year, month=month, day=day)
    raise FieldValueError(f"{what} must be a date as YYYY-MM-DD or YYYY-MM")


def _as_number(raw: object, what: str) -> int:
    if isinstance(raw, bool):
        raise FieldValueError(f"{what} must be a whole number, not a yes/no value")
    if isinstance(raw, int):
        return raw
    if isinstance(raw, Decimal) and raw == raw.to_integral_value():
        return int(raw)
    if isinstance(raw, float) and raw.is_integer():
        return int(raw)
    if isinstance(raw, str) and re.fullmatch(r"-?[0-9]{1,18}", raw.strip()):
        return int(raw.strip())
    raise FieldValueError(f"{what} must be a whole number")


def _as_bool(raw: object, what: str) -> bool:
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, int) and raw in (0, 1):
        return bool(raw)
    if isinstance(raw, str):
        text = raw.strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
    raise FieldValueError(f"{what} must be yes/no (true/false, ja/nee, 1/0)")


def to_fact_value(
    ftype: FieldType, raw: object, what: str, allowed: Collection[str] = ()
) -> common_pb2.FactValue:
    """Convert one raw value to a ``FactValue`` of ``ftype``.

    ``what`` names the field in error messages; ``allowed``, when not empty,
    is the value set a code must come from.
    """
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        raise FieldValueError(f"{what} is empty")
    if ftype is FieldType.NUMBER:
        return common_pb2.FactValue(number=_as_number(raw, what))
    if ftype is FieldType.BOOL:
        return common_pb2.FactValue(flag=_as_bool(raw, what))
    if ftype is FieldType.DATE:
        return common_pb2.FactValue(date=_as_date(raw, what))
    if not isinstance(raw, str):
        raise FieldValueError(f"{what} must be text")
    text = raw.strip()
    if ftype is FieldType.CONTACT:
        return common_pb2.FactValue(text=check_contact(text, what))
    check_code(text, what)
    if allowed and text not in allowed:
        raise FieldValueError(f"{what} is not in the declared value set")
    return common_pb2.FactValue(text=text)
