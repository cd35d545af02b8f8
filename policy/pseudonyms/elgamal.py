"""The ElGamal recipes: encrypt with fresh randomness, rerandomise, decrypt in a domain.

Every operation that needs randomness takes a fresh scalar from libsodium's
CSPRNG here; the variants with a caller-given scalar are
:mod:`policy.pseudonyms.hazmat.elgamal`.
"""

from __future__ import annotations

import functools

from policy.pseudonyms.ciphertext import Ciphertext
from policy.pseudonyms.errors import PseudonymError
from policy.pseudonyms.hazmat import group
from policy.pseudonyms.hazmat.elgamal import encrypt_with, rerandomise_with


def encrypt(point: bytes, public_key: bytes) -> Ciphertext:
    """Encrypt a subject point under ``public_key`` with fresh randomness: ``(rG, M + rP, P)``."""
    return encrypt_with(point, public_key, group.random_scalar())


def rerandomise(ct: Ciphertext) -> Ciphertext:
    """The same plaintext under the same key, unlinkable to ``ct``: ``(B + rG, C + rP, P)``."""
    if not isinstance(ct, Ciphertext):
        raise PseudonymError(f"expected a Ciphertext, not {type(ct).__name__}")
    return rerandomise_with(ct, group.random_scalar())


@functools.lru_cache(maxsize=64)
def _public_key_of(secret_key: bytes) -> bytes:
    # A partner decrypts many subjects with one key; the check below then costs no base mult.
    return group.mul_base(group.check_scalar(secret_key, "domain key"), "domain key")


def decrypt(ct: Ciphertext, domain_key: bytes) -> bytes:
    """Decrypt to the 32-byte domain pseudonym ``C - y_d * B``.

    A key that does not belong to ``ct.public_key`` is refused, so a wrong key
    gives an error rather than a meaningless pseudonym.
    """
    if not isinstance(ct, Ciphertext):
        raise PseudonymError(f"expected a Ciphertext, not {type(ct).__name__}")
    if not isinstance(domain_key, bytes):  # unhashable input would never reach the check
        group.check_scalar(domain_key, "domain key")
    if _public_key_of(domain_key) != ct.public_key:
        raise PseudonymError(
            "the domain key does not match the ciphertext's public key: "
            "the ciphertext was not transcrypted to this domain"
        )
    return group.sub(ct.c, group.mul(domain_key, ct.b, "decryption"), "decryption")


def pseudonym_hex(pseudonym: bytes) -> str:
    """The lowercase-hex form of a 32-byte pseudonym, as stored and logged."""
    if not isinstance(pseudonym, bytes) or len(pseudonym) != group.POINT_BYTES:
        raise PseudonymError("a pseudonym must be 32 bytes")
    return pseudonym.hex()
