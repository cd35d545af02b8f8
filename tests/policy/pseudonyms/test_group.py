"""libsodium's failure codes become clear PseudonymErrors, never a bare ValueError or a crash."""

from __future__ import annotations

import pysodium
import pytest

from policy.pseudonyms import PseudonymError, decrypt, rerandomise
from policy.pseudonyms.hazmat import group

POINT = pysodium.crypto_scalarmult_ristretto255_base(group.random_scalar())
NOT_A_POINT = bytes.fromhex("0100000000000000000000000000000000000000000000000000000000000000")


def test_zero_scalar_has_no_inverse() -> None:
    with pytest.raises(PseudonymError, match="factor is zero and has no inverse"):
        group.scalar_invert(bytes(32), "factor")


def test_inverse_really_inverts() -> None:
    x = group.random_scalar()
    one = (1).to_bytes(32, "little")
    assert group.scalar_mul(x, group.scalar_invert(x, "x")) == one


def test_zero_scalar_times_a_point_is_refused() -> None:
    with pytest.raises(PseudonymError, match="the product is the identity point"):
        group.mul(bytes(32), POINT, "test")
    with pytest.raises(PseudonymError, match="the scalar is zero"):
        group.mul_base(bytes(32), "test")


def test_invalid_point_in_arithmetic_is_refused() -> None:
    with pytest.raises(PseudonymError, match="the point is invalid"):
        group.mul(group.random_scalar(), NOT_A_POINT, "test")
    with pytest.raises(PseudonymError, match="an operand is not a valid point"):
        group.add(POINT, NOT_A_POINT, "test")
    with pytest.raises(PseudonymError, match="an operand is not a valid point"):
        group.sub(NOT_A_POINT, POINT, "test")


def test_identity_results_are_refused() -> None:
    negated = pysodium.crypto_core_ristretto255_sub(bytes(32), POINT)
    with pytest.raises(PseudonymError, match="the sum is the identity point"):
        group.add(POINT, negated, "test")
    with pytest.raises(PseudonymError, match="the difference is the identity point"):
        group.sub(POINT, POINT, "test")


def test_non_ciphertexts_are_refused() -> None:
    with pytest.raises(PseudonymError, match="expected a Ciphertext, not bytes"):
        rerandomise(POINT * 3)
    with pytest.raises(PseudonymError, match="expected a Ciphertext, not bytes"):
        decrypt(POINT * 3, group.random_scalar())
