"""Group arithmetic: thin, checked wrappers over libsodium's ristretto255 functions (pysodium).

pysodium signals every failure with a bare ``ValueError``; these wrappers turn
the failures that bad input can cause into :class:`PseudonymError` with a
message that names what was wrong. Points are 32-byte canonical encodings,
scalars 32-byte little-endian integers below the group order.
"""

from __future__ import annotations

import pysodium

from policy.pseudonyms.errors import PseudonymError

POINT_BYTES = 32
SCALAR_BYTES = 32
IDENTITY = bytes(POINT_BYTES)
"""The canonical encoding of the identity element is all zeros."""
_ZERO_SCALAR = bytes(SCALAR_BYTES)
GENERATOR = bytes.fromhex("e2f2ae0a6abc4e71a884a961c500515f58e30b6aa582dd8db6a65945e08d2d76")
"""The canonical encoding of the generator G (RFC 9496)."""


def check_point(raw: object, what: str) -> bytes:
    """Return ``raw`` if it is a valid, non-identity ristretto255 encoding; else raise."""
    if not isinstance(raw, bytes):
        raise PseudonymError(f"{what} must be bytes, not {type(raw).__name__}")
    if len(raw) != POINT_BYTES:
        raise PseudonymError(f"{what} must be {POINT_BYTES} bytes, got {len(raw)}")
    if raw == IDENTITY:
        raise PseudonymError(f"{what} is the identity point, which carries no information")
    if not pysodium.crypto_core_ristretto255_is_valid_point(raw):
        raise PseudonymError(f"{what} is not a canonical ristretto255 point encoding")
    return raw


def check_scalar(raw: object, what: str) -> bytes:
    """Return ``raw`` if it is a canonical, non-zero scalar; else raise."""
    if not isinstance(raw, bytes):
        raise PseudonymError(f"{what} must be bytes, not {type(raw).__name__}")
    if len(raw) != SCALAR_BYTES:
        raise PseudonymError(f"{what} must be {SCALAR_BYTES} bytes, got {len(raw)}")
    if reduce_wide(raw + bytes(32)) != raw:
        raise PseudonymError(f"{what} is not a canonical scalar (not below the group order)")
    if raw == _ZERO_SCALAR:
        raise PseudonymError(f"{what} is zero")
    return raw


def reduce_wide(wide: bytes) -> bytes:
    """Reduce a 64-byte little-endian integer modulo the group order."""
    reduced: bytes = pysodium.crypto_core_ristretto255_scalar_reduce(wide)
    return reduced


def random_scalar() -> bytes:
    """A uniformly random non-zero scalar from libsodium's CSPRNG."""
    scalar: bytes = pysodium.crypto_core_ristretto255_scalar_random()
    return scalar


def scalar_mul(x: bytes, y: bytes) -> bytes:
    """x * y modulo the group order."""
    product: bytes = pysodium.crypto_core_ristretto255_scalar_mul(x, y)
    return product


def scalar_invert(x: bytes, what: str) -> bytes:
    """1 / x modulo the group order; zero has no inverse."""
    try:
        inverse: bytes = pysodium.crypto_core_ristretto255_scalar_invert(x)
    except ValueError:
        raise PseudonymError(f"{what} is zero and has no inverse") from None
    return inverse


def mul(scalar: bytes, point: bytes, what: str) -> bytes:
    """scalar * point. libsodium refuses an invalid point and an identity result."""
    try:
        result: bytes = pysodium.crypto_scalarmult_ristretto255(scalar, point)
    except ValueError:
        raise PseudonymError(
            f"{what}: the point is invalid or the product is the identity point"
        ) from None
    return result


def mul_base(scalar: bytes, what: str) -> bytes:
    """scalar * G. libsodium refuses a zero scalar (identity result)."""
    try:
        result: bytes = pysodium.crypto_scalarmult_ristretto255_base(scalar)
    except ValueError:
        raise PseudonymError(f"{what}: the scalar is zero") from None
    return result


def add(p: bytes, q: bytes, what: str) -> bytes:
    """p + q, refusing an identity result so no ciphertext ever carries it."""
    try:
        result: bytes = pysodium.crypto_core_ristretto255_add(p, q)
    except ValueError:
        raise PseudonymError(f"{what}: an operand is not a valid point") from None
    if result == IDENTITY:
        raise PseudonymError(f"{what}: the sum is the identity point")
    return result


def sub(p: bytes, q: bytes, what: str) -> bytes:
    """p - q, refusing an identity result."""
    try:
        result: bytes = pysodium.crypto_core_ristretto255_sub(p, q)
    except ValueError:
        raise PseudonymError(f"{what}: an operand is not a valid point") from None
    if result == IDENTITY:
        raise PseudonymError(f"{what}: the difference is the identity point")
    return result


def from_hash(digest: bytes) -> bytes:
    """Map a 64-byte uniform string to a group element (RFC 9496 one-way map)."""
    point: bytes = pysodium.crypto_core_ristretto255_from_hash(digest)
    return point
