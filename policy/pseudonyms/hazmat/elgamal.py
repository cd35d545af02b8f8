"""ElGamal encryption and rerandomisation with a caller-given scalar.

The scalar ``r`` must be fresh, uniformly random and secret for every
operation: with a known ``r`` anyone can strip the encryption (``C - rP``),
and a reused ``r`` links the ciphertexts. Only the recipes (which pass
libsodium's random scalar) and the published test vectors (fixed, public
scalars) call these.
"""

from __future__ import annotations

from policy.pseudonyms.ciphertext import Ciphertext
from policy.pseudonyms.hazmat import group


def encrypt_with(point: bytes, public_key: bytes, r: bytes) -> Ciphertext:
    """Encrypt ``point`` under ``public_key`` with the randomness ``r``: ``(rG, M + rP, P)``."""
    r = group.check_scalar(r, "encryption randomness")
    group.check_point(point, "subject point")
    group.check_point(public_key, "public key")
    return Ciphertext._trusted(
        group.mul_base(r, "encryption"),
        group.add(point, group.mul(r, public_key, "encryption"), "encryption"),
        public_key,
    )


def rerandomise_with(ct: Ciphertext, r: bytes) -> Ciphertext:
    """Rerandomise ``ct`` with the randomness ``r``: ``(B + rG, C + rP, P)``."""
    r = group.check_scalar(r, "rerandomisation randomness")
    return Ciphertext._trusted(
        group.add(ct.b, group.mul_base(r, "rerandomisation"), "rerandomisation"),
        group.add(ct.c, group.mul(r, ct.public_key, "rerandomisation"), "rerandomisation"),
        ct.public_key,
    )
