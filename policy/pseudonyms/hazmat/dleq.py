"""Proof that two points carry the same secret factor (Chaum-Pedersen, non-interactive).

For a key share ``y_i`` the prover shows ``U = y_i*G`` and ``Y_i = y_i*Y_{i-1}``
without revealing ``y_i``:

- nonce ``w = Hs(y_i, "schakel/v1/ceremony-nonce|" || Y_{i-1} || U || Y_i)``,
  deterministic like an EdDSA nonce, so a proof never reuses a nonce with
  other inputs and the published vectors are reproducible;
- commitments ``A = w*G``, ``B = w*Y_{i-1}``;
- challenge ``c = reduce(SHA-512("schakel/v1/ceremony|" || Y_{i-1} || U || Y_i || A || B))``;
- response ``z = w + c*y_i`` (mod L).

The proof is ``(c, z)``. A verifier recomputes ``A = z*G - c*U`` and
``B = z*Y_{i-1} - c*Y_i`` and checks that they hash to ``c``.
"""

from __future__ import annotations

import hashlib

import pysodium

from policy.pseudonyms.errors import PseudonymError
from policy.pseudonyms.hazmat import group
from policy.pseudonyms.hazmat.factors import hash_to_scalar

NONCE_LABEL = b"schakel/v1/ceremony-nonce|"
CHALLENGE_LABEL = b"schakel/v1/ceremony|"


def _challenge(previous: bytes, share: bytes, result: bytes, a: bytes, b: bytes) -> bytes:
    digest = hashlib.sha512(CHALLENGE_LABEL + previous + share + result + a + b).digest()
    return group.reduce_wide(digest)


def prove(secret: bytes, previous: bytes) -> tuple[bytes, bytes, bytes, bytes]:
    """``(U, Y_i, c, z)``: the share's public point, the next key and the proof."""
    secret = group.check_scalar(secret, "key share")
    group.check_point(previous, "previous key")
    share = group.mul_base(secret, "key share")
    result = group.mul(secret, previous, "ceremony step")
    nonce = hash_to_scalar(secret, NONCE_LABEL + previous + share + result)
    a = group.mul_base(nonce, "proof commitment")
    b = group.mul(nonce, previous, "proof commitment")
    c = _challenge(previous, share, result, a, b)
    z: bytes = pysodium.crypto_core_ristretto255_scalar_add(nonce, group.scalar_mul(c, secret))
    return share, result, c, z


def verify(previous: bytes, share: bytes, result: bytes, c: bytes, z: bytes) -> None:
    """Raise :class:`PseudonymError` unless ``(c, z)`` proves ``share`` and ``result`` agree."""
    for point, what in ((previous, "previous key"), (share, "share"), (result, "result")):
        group.check_point(point, what)
    c = group.check_scalar(c, "proof challenge")
    z = group.check_scalar(z, "proof response")
    try:
        a = group.sub(group.mul_base(z, "proof"), group.mul(c, share, "proof"), "proof")
        b = group.sub(group.mul(z, previous, "proof"), group.mul(c, result, "proof"), "proof")
    except PseudonymError:
        raise PseudonymError("the proof does not verify") from None
    if _challenge(previous, share, result, a, b) != c:
        raise PseudonymError("the proof does not verify")
