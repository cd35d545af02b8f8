"""The audit log's BSN guard and the pseudonym scheme share one elfproef."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.audit import records
from policy.pseudonyms import is_valid_bsn
from tests.support.audit import record


@pytest.mark.parametrize(
    ("value", "valid"),
    [
        ("111222333", True),
        ("012345672", True),
        ("111222334", False),
        # All zeros passes the 11-test's sum but is no BSN; the guard's own
        # 11-test used to call it one while encrypt_subject refused it.
        ("000000000", False),
    ],
)
def test_the_guard_calls_a_number_a_bsn_exactly_when_the_scheme_does(
    value: str, valid: bool
) -> None:
    assert is_valid_bsn(value) is valid
    assert records.is_bsn_shaped(f"zaak {value}") is valid


@given(st.text(alphabet="0123456789", min_size=9, max_size=9))
def test_the_guard_and_the_scheme_agree_on_every_nine_digits(value: str) -> None:
    assert records.is_bsn_shaped(value) == is_valid_bsn(value)


def test_a_number_that_is_no_bsn_may_enter_the_log() -> None:
    r = record()
    r.case_ref.case_id = "000000000"
    records.validate(r)
