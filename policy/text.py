"""The one rule for text a node stores or forwards: a token or a contact, never an identifier.

Every string field an RPC carries into a case table, the fact vault, a task
or another node is one of three kinds, and each has one check here:

- a **code** (theme, criteria, reason codes, outcome, category, tag):
  :func:`check_code`, 1-64 of lowercase letters, digits, ``.``, ``_``, ``-``;
- a **token** (external ref, idempotency key, evidence ref):
  :func:`check_token`, 1-128 of letters, digits, ``.``, ``_``, ``:``, ``/``, ``-``;
- a **contact handle**: :func:`check_contact`, an e-mail address, a phone
  number, or an ``https:``, ``tel:`` or ``mailto:`` URI.

None of them may hold an identifier (:func:`identifier_in`): an
elfproef-valid nine-digit number (a BSN, :func:`policy.pseudonyms.is_valid_bsn`)
or a date (a birth date is as identifying as a name). Free text (a name, a
sentence) fits none of the forms. A run of hex of 16 or more characters (a
uuid or a hash, as keys and case ids are made) is not read for numbers: it is
not something a person typed, and its digits are random.

Errors (:class:`TextError`) name the field and the rule, never the value.
"""

from __future__ import annotations

import calendar
import re

from policy.pseudonyms import is_valid_bsn

MAX_CODE = 64
MAX_TOKEN = 128
MAX_CONTACT = 200
MIN_PHONE_DIGITS, MAX_PHONE_DIGITS = 8, 15

_CODE = re.compile(rf"[a-z0-9][a-z0-9._-]{{0,{MAX_CODE - 1}}}")
_TOKEN = re.compile(rf"[A-Za-z0-9][A-Za-z0-9._:/-]{{0,{MAX_TOKEN - 1}}}")
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOST = rf"{_LABEL}(?:\.{_LABEL})*"
_EMAIL = re.compile(rf"[A-Za-z0-9._%+-]{{1,64}}@{_HOST}")
_PHONE = re.compile(r"\+?[0-9(][0-9 ().-]*[0-9]")
_TEL = re.compile(r"tel:\+?[0-9][0-9().-]*[0-9]")
_HTTPS = re.compile(rf"https://{_HOST}(?::[0-9]{{1,5}})?(?:/[A-Za-z0-9._~%!$&'()*+,;=:@/-]*)?")
_MAILTO = re.compile(rf"mailto:{_EMAIL.pattern}")

_ANY_DIGIT = re.compile(r"[0-9]")
_DIGITS = re.compile(r"(?<![0-9])[0-9]+(?![0-9])")
_LONG_HEX_RUN = re.compile(r"[0-9A-Fa-f]{16,}")
_YMD = re.compile(r"(?<![0-9])([0-9]{4})([-/.])([0-9]{1,2})\2([0-9]{1,2})(?![0-9])")
_DMY = re.compile(r"(?<![0-9])([0-9]{1,2})([-/.])([0-9]{1,2})\2([0-9]{4}|[0-9]{2})(?![0-9])")
_MONTHS = {
    "jan": 1,
    "feb": 2,
    "mrt": 3,
    "maa": 3,
    "mar": 3,
    "apr": 4,
    "mei": 5,
    "may": 5,
    "jun": 6,
    "jul": 7,
    "aug": 8,
    "sep": 9,
    "okt": 10,
    "oct": 10,
    "nov": 11,
    "dec": 12,
}
_NAMED = re.compile(
    rf"(?<![0-9])([0-9]{{1,2}})[-/. ]?({'|'.join(_MONTHS)})[a-z]*\.?[-/. ]?([0-9]{{4}}|[0-9]{{2}})"
    r"(?![0-9])",
    re.IGNORECASE,
)

BSN = "a BSN"
DATE = "a date"


class TextError(ValueError):
    """A text field is not of its form, or holds an identifier; names the field, not the value."""


def _is_date(year: int, month: int, day: int) -> bool:
    """A real calendar day; a two-digit year counts (it is how people write birth dates)."""
    if year < 100:
        year += 1900
    return (
        1 <= month <= 12
        and 1900 <= year <= 2099
        and 1 <= day <= calendar.monthrange(year, month)[1]
    )


def _compact_date(digits: str) -> bool:
    """``yyyymmdd`` or ``ddmmyyyy``."""
    return _is_date(int(digits[:4]), int(digits[4:6]), int(digits[6:])) or _is_date(
        int(digits[4:]), int(digits[2:4]), int(digits[:2])
    )


def _without_long_hex(text: str) -> str:
    """``text`` with every hex run of 16 or more characters (a uuid or a hash) blanked out.

    Random hex is full of digit and letter mixes that read as dates ("4dec04" is
    4 December 1904), so no pattern may look inside it.
    """
    return _LONG_HEX_RUN.sub(" ", text)


def _number_is(digits: str) -> str | None:
    if len(digits) == 9 and is_valid_bsn(digits):
        return BSN
    if len(digits) == 8 and _compact_date(digits):
        return DATE
    return None


def identifier_in(text: str) -> str | None:
    """What identifier ``text`` holds (:data:`BSN` or :data:`DATE`), or None.

    A BSN is a standalone run of nine digits that passes the elfproef; a date
    is ``yyyy-mm-dd``, ``dd-mm-yyyy`` or ``dd-mm-yy`` (with ``-``, ``/`` or
    ``.``), ``yyyymmdd`` or ``ddmmyyyy``, or a day, a month's name and a year
    (``12-mrt-1985``), each a real calendar day from 1900 to 2099. Hex runs of
    16 or more characters (uuids, hashes) are not read at all.
    """
    if _ANY_DIGIT.search(text) is None:
        return None  # every identifier has digits; most codes and handles have none
    text = _without_long_hex(text)
    for digits in _DIGITS.findall(text):
        found = _number_is(digits)
        if found is not None:
            return found
    for m in _YMD.finditer(text):
        if _is_date(int(m.group(1)), int(m.group(3)), int(m.group(4))):
            return DATE
    for m in _DMY.finditer(text):
        first, second, year = int(m.group(1)), int(m.group(3)), int(m.group(4))
        if _is_date(year, second, first) or _is_date(year, first, second):
            return DATE
    for m in _NAMED.finditer(text):
        month = _MONTHS[m.group(2)[:3].lower()]
        if _is_date(int(m.group(3)), month, int(m.group(1))):
            return DATE
    return None


def check_no_identifier(value: str, what: str) -> str:
    """``value`` if it holds no BSN and no date; TextError otherwise."""
    found = identifier_in(value)
    if found is not None:
        raise TextError(f"{what} holds {found}; identifiers never go into a case or a message")
    return value


def check_code(value: str, what: str) -> str:
    """A machine code: 1-64 of lowercase letters, digits, '.', '_' or '-', no identifier."""
    if not isinstance(value, str) or not _CODE.fullmatch(value):
        raise TextError(
            f"{what} must be a code of 1-{MAX_CODE} lowercase letters, digits, '.', '_' or '-', "
            "starting with a letter or digit (free text is not allowed)"
        )
    return check_no_identifier(value, what)


def check_token(value: str, what: str, *, max_length: int = MAX_TOKEN) -> str:
    """A reference or key: 1-``max_length`` of letters, digits, '.', '_', ':', '/' or '-'.

    It must start with a letter or digit and hold no identifier, so a name,
    a sentence, a BSN or a birth date never becomes a reference.
    """
    if not isinstance(value, str) or not _TOKEN.fullmatch(value) or len(value) > max_length:
        raise TextError(
            f"{what} must be 1-{max_length} letters, digits, '.', '_', ':', '/' or '-', "
            "starting with a letter or digit (a reference, not free text)"
        )
    return check_no_identifier(value, what)


def _phone_digits(value: str) -> str | None:
    """The digits of a phone number written with ``value``'s separators, or None."""
    digits = re.sub(r"[^0-9]", "", value)
    return digits if MIN_PHONE_DIGITS <= len(digits) <= MAX_PHONE_DIGITS else None


def check_contact(value: str, what: str = "contact handle") -> str:
    """A contact handle: an e-mail address, a phone number, or an https, tel or mailto URI.

    At most 200 characters and no identifier. A phone number has 8-15 digits
    (spaces, dashes, dots and parentheses between them); its digits taken
    together must not be a BSN or a date.
    """
    if not isinstance(value, str) or not 0 < len(value) <= MAX_CONTACT or not value.isascii():
        raise TextError(
            f"{what} must be 1-{MAX_CONTACT} ASCII characters: an e-mail address, a phone "
            "number, or an https, tel or mailto URI (a function mailbox, not a person's data)"
        )
    phone = _PHONE.fullmatch(value) or _TEL.fullmatch(value)
    digits = _phone_digits(value) if phone else None
    if digits is not None:
        found = _number_is(digits)
        if found is not None:
            raise TextError(f"{what} holds {found}; identifiers never go into a case or a message")
        return value
    if not (_EMAIL.fullmatch(value) or _HTTPS.fullmatch(value) or _MAILTO.fullmatch(value)):
        raise TextError(
            f"{what} must be an e-mail address, a phone number of {MIN_PHONE_DIGITS}-"
            f"{MAX_PHONE_DIGITS} digits, or an https, tel or mailto URI (not free text)"
        )
    return check_no_identifier(value, what)


def check_fact_text(value: str, what: str) -> str:
    """The text of a fact's field: a code-like token or a contact handle, never free text.

    Which of the two a field takes is its type in the policy bundle, checked
    when the fact is minimised; here it must be one of them and hold no
    identifier.
    """
    if isinstance(value, str) and _TOKEN.fullmatch(value):
        return check_no_identifier(value, what)
    try:
        return check_contact(value, what)
    except TextError as exc:
        if identifier_in(value) is not None:
            raise
        raise TextError(
            f"{what} must be a code or a contact handle (free text is not allowed)"
        ) from exc


__all__ = [
    "BSN",
    "DATE",
    "MAX_CODE",
    "MAX_CONTACT",
    "MAX_TOKEN",
    "TextError",
    "check_code",
    "check_contact",
    "check_fact_text",
    "check_no_identifier",
    "check_token",
    "identifier_in",
]
