"""The one rule for stored and forwarded text: tokens, codes and contacts, never an identifier."""

from __future__ import annotations

import random
import uuid

import pytest

from policy.text import (
    BSN,
    DATE,
    TextError,
    check_code,
    check_contact,
    check_fact_text,
    check_token,
    identifier_in,
)

A_BSN = "123456782"


@pytest.mark.parametrize(
    ("text", "found"),
    [
        (A_BSN, BSN),
        (f"ref-{A_BSN}", BSN),
        (f"bsn{A_BSN}", BSN),
        ("123456789", None),  # fails the elfproef
        ("1234567820", None),  # ten digits: not a nine-digit number
        ("1985-03-12", DATE),
        ("12-03-1985", DATE),
        ("12/03/1985", DATE),
        ("12.03.85", DATE),
        ("03-12-1985", DATE),
        ("19850312", DATE),
        ("12031985", DATE),
        ("geb-12-mrt-1985", DATE),
        ("12 maart 1985", DATE),
        ("31-02-1985", None),  # no such day
        ("POL-RR-2026-0042", None),
        ("TOESTEMMING-2026-17", None),
        ("2026", None),
        ("+31 10 123 4567", None),
    ],
)
def test_identifiers_are_found(text: str, found: str | None) -> None:
    assert identifier_in(text) == found


def test_a_uuid_or_hash_is_not_read_for_numbers() -> None:
    key = "a" + A_BSN + "0" * 22  # 32 hex characters, as uuid4().hex makes them
    assert identifier_in(key) is None
    assert identifier_in(f"{key}:{'ref-1'}") is None
    for _ in range(200):
        check_token(uuid.uuid4().hex, "idempotency_key")


@pytest.mark.parametrize(
    "key",
    [
        "a7d6bb2d0a07434dbf95faa4decfa04d",  # a uuid4 whose "4decfa04" read as 4 Dec 1904
        "0123456789abcdef1feb20aa",
        "ffff12dec1985fffff",
    ],
)
def test_a_month_name_inside_a_uuid_or_hash_is_no_date(key: str) -> None:
    assert identifier_in(key) is None
    assert identifier_in(f"ref-{key}") is None


def test_no_random_hex_key_is_refused() -> None:
    # Seeded, so a failure names a reproducible key rather than a one-in-a-thousand flake.
    rng = random.Random(20261130)
    for _ in range(20_000):
        key = "".join(rng.choice("0123456789abcdef") for _ in range(rng.choice((16, 32, 64))))
        assert identifier_in(key) is None, key


@pytest.mark.parametrize("value", ["POL-2026-0001", "make-run-demo-1", "a/b:c.d_e", "R" * 128])
def test_tokens(value: str) -> None:
    assert check_token(value, "external_ref") == value


@pytest.mark.parametrize(
    "value", ["", "Jan de Vries", " lead", "-dash", "R" * 129, "naïef", A_BSN, "19850312"]
)
def test_not_tokens(value: str) -> None:
    with pytest.raises(TextError, match="external_ref"):
        check_token(value, "external_ref")


def test_codes_are_lowercase_tokens_without_identifiers() -> None:
    assert check_code("doelen-bereikt", "outcome") == "doelen-bereikt"
    for bad in ("Doelen", "twee woorden", f"x-{A_BSN}", "geb-1985-03-12"):
        with pytest.raises(TextError, match="outcome"):
            check_code(bad, "outcome")


@pytest.mark.parametrize(
    "value",
    [
        "procesregie@zvh-rotterdam-rijnmond.example",
        "x@example",
        "+31 10 123 4567",
        "(010) 123 45 67",
        "+31 612345678",
        "06-11052019",
        "tel:+31-10-1234567",
        "mailto:wijkteam@gemeente.example",
        "https://zvh.example/contact",
    ],
)
def test_contact_handles(value: str) -> None:
    assert check_contact(value) == value


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("Jan de Vries", "e-mail address"),
        ("Jan de Vries <jan@politie.example>", "e-mail address"),
        ("http://zvh.example", "e-mail address"),
        ("112", "e-mail address"),
        (A_BSN, "holds a BSN"),
        ("12-03-1985", "holds a date"),
        ("jan19850312@politie.example", "holds a date"),
        ("https://zvh.example/1985-03-12", "holds a date"),
        ("x" * 201, "1-200"),
        ("", "1-200"),
    ],
)
def test_not_contact_handles(value: str, why: str) -> None:
    with pytest.raises(TextError, match=why) as err:
        check_contact(value, "contact_handle")
    assert A_BSN not in str(err.value) and "Jan" not in str(err.value)


def test_fact_text_is_a_code_or_a_contact() -> None:
    assert check_fact_text("geweld", "f") == "geweld"
    assert check_fact_text("wijkagent@politie.example", "f") == "wijkagent@politie.example"
    with pytest.raises(TextError, match="code or a contact"):
        check_fact_text("Jan de Vries", "f")
    with pytest.raises(TextError, match="holds a BSN"):
        check_fact_text(A_BSN, "f")
