"""Subject identifiers and their subject points (policy/pseudonyms/README.md).

``M = from_hash(SHA-512(b"schakel/v1/subject\\x00" + id_type + b"\\x00" + value))``,
both parts UTF-8. A BSN must be nine ASCII digits that pass the elfproef.
"""

from __future__ import annotations

import hashlib
import re

from policy.pseudonyms.errors import PseudonymError
from policy.pseudonyms.hazmat import group

SUBJECT_LABEL = b"schakel/v1/subject\x00"
BSN = "bsn"
MAX_VALUE_BYTES = 256
_ID_TYPE = re.compile(r"[a-z][a-z0-9_.-]{0,31}")
_BSN = re.compile(r"[0-9]{9}")
_BSN_WEIGHTS = (9, 8, 7, 6, 5, 4, 3, 2, -1)


def check_id_type(id_type: object) -> str:
    """Return ``id_type`` if it is a lowercase token (letter first, at most 32 characters)."""
    if not isinstance(id_type, str) or not _ID_TYPE.fullmatch(id_type):
        raise PseudonymError(
            "id_type must be 1-32 characters of lowercase letters, digits, '_', '.' or '-', "
            "starting with a letter"
        )
    return id_type


def is_valid_bsn(value: str) -> bool:
    """True for nine ASCII digits, not all zero, whose elfproef (11-test) sum is 0 mod 11."""
    if not _BSN.fullmatch(value) or value == "000000000":
        return False
    return sum(w * int(d) for w, d in zip(_BSN_WEIGHTS, value, strict=True)) % 11 == 0


def check_identifier(id_type: object, value: object) -> tuple[str, str]:
    """Validate an identifier; errors describe the rule broken, never the value."""
    id_type = check_id_type(id_type)
    if not isinstance(value, str):
        raise PseudonymError(f"the {id_type} value must be a string, not {type(value).__name__}")
    if id_type == BSN:
        if not _BSN.fullmatch(value):
            raise PseudonymError("a bsn must be exactly 9 ASCII digits")
        if not is_valid_bsn(value):
            raise PseudonymError("the bsn fails the elfproef (11-test) or is all zeros")
        return id_type, value
    # isprintable() also refuses lone surrogates, so the value always encodes as UTF-8.
    if not value.isprintable():
        raise PseudonymError(f"the {id_type} value contains control or unprintable characters")
    encoded_length = len(value.encode("utf-8"))
    if encoded_length == 0 or encoded_length > MAX_VALUE_BYTES:
        raise PseudonymError(
            f"the {id_type} value must be 1-{MAX_VALUE_BYTES} bytes of UTF-8, got {encoded_length}"
        )
    return id_type, value


def subject_point(id_type: str, value: str) -> bytes:
    """The subject point M of an identifier: 32 bytes, the plaintext of every encryption."""
    id_type, value = check_identifier(id_type, value)
    message = SUBJECT_LABEL + id_type.encode() + b"\x00" + value.encode("utf-8")
    return group.from_hash(hashlib.sha512(message).digest())
