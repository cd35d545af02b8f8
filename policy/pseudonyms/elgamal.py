"""ElGamal on ristretto255: ciphertexts, encryption, rerandomisation, decryption.

A ciphertext is ``(B, C, P)``: ``B = rG``, ``C = M + rP``, and ``P`` the public
key it is currently encrypted under. Its wire form is the 96 bytes
``B || C || P``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from schakel.v1 import common_pb2

from policy.pseudonyms import _group
from policy.pseudonyms.errors import PseudonymError

CIPHERTEXT_BYTES = 3 * _group.POINT_BYTES


@dataclass(frozen=True)
class Ciphertext:
    """An encrypted subject point: a polymorphic pseudonym.

    Constructing one validates every point (32 bytes, canonical, not the
    identity); the operations of this package build their results through
    :meth:`_trusted` because group operations on valid points give valid points.
    """

    b: bytes
    c: bytes
    public_key: bytes

    def __post_init__(self) -> None:
        _group.check_point(self.b, "ciphertext part B")
        _group.check_point(self.c, "ciphertext part C")
        _group.check_point(self.public_key, "ciphertext public key P")

    @classmethod
    def _trusted(cls, b: bytes, c: bytes, public_key: bytes) -> Ciphertext:
        # Skips __post_init__: three point decodings would cost ~8% of a transcryption.
        ct = object.__new__(cls)
        object.__setattr__(ct, "b", b)
        object.__setattr__(ct, "c", c)
        object.__setattr__(ct, "public_key", public_key)
        return ct

    def to_bytes(self) -> bytes:
        """The 96-byte wire form ``B || C || P``."""
        return self.b + self.c + self.public_key

    @classmethod
    def from_bytes(cls, raw: bytes) -> Ciphertext:
        """Parse and validate the 96-byte wire form."""
        if not isinstance(raw, bytes):
            raise PseudonymError(f"a ciphertext must be bytes, not {type(raw).__name__}")
        if len(raw) != CIPHERTEXT_BYTES:
            raise PseudonymError(
                f"a ciphertext must be {CIPHERTEXT_BYTES} bytes (B || C || P), got {len(raw)}"
            )
        return cls(raw[:32], raw[32:64], raw[64:])

    def to_proto(self) -> common_pb2.EncryptedPseudonym:
        """The ``EncryptedPseudonym`` message of the API."""
        return common_pb2.EncryptedPseudonym(b=self.b, c=self.c, public_key=self.public_key)

    @classmethod
    def from_proto(cls, msg: common_pb2.EncryptedPseudonym) -> Ciphertext:
        """Parse and validate an ``EncryptedPseudonym`` message; a missing field is an error."""
        if not isinstance(msg, common_pb2.EncryptedPseudonym):
            raise PseudonymError(f"expected an EncryptedPseudonym, not {type(msg).__name__}")
        return cls(msg.b, msg.c, msg.public_key)


def _encrypt(point: bytes, public_key: bytes, r: bytes) -> Ciphertext:
    _group.check_point(point, "subject point")
    _group.check_point(public_key, "public key")
    return Ciphertext._trusted(
        _group.mul_base(r, "encryption"),
        _group.add(point, _group.mul(r, public_key, "encryption"), "encryption"),
        public_key,
    )


def encrypt_with(point: bytes, public_key: bytes, r: bytes) -> Ciphertext:
    """Encrypt with the given randomness ``r``: only for test vectors, never for real data."""
    return _encrypt(point, public_key, _group.check_scalar(r, "encryption randomness"))


def encrypt(point: bytes, public_key: bytes) -> Ciphertext:
    """Encrypt a subject point under ``public_key`` with fresh randomness: ``(rG, M + rP, P)``."""
    return _encrypt(point, public_key, _group.random_scalar())


def _rerandomise(ct: Ciphertext, r: bytes) -> Ciphertext:
    return Ciphertext._trusted(
        _group.add(ct.b, _group.mul_base(r, "rerandomisation"), "rerandomisation"),
        _group.add(ct.c, _group.mul(r, ct.public_key, "rerandomisation"), "rerandomisation"),
        ct.public_key,
    )


def rerandomise_with(ct: Ciphertext, r: bytes) -> Ciphertext:
    """Rerandomise with the given ``r``: only for test vectors, never for real data."""
    return _rerandomise(ct, _group.check_scalar(r, "rerandomisation randomness"))


def rerandomise(ct: Ciphertext) -> Ciphertext:
    """The same plaintext under the same key, unlinkable to ``ct``: ``(B + rG, C + rP, P)``."""
    if not isinstance(ct, Ciphertext):
        raise PseudonymError(f"expected a Ciphertext, not {type(ct).__name__}")
    return _rerandomise(ct, _group.random_scalar())


@functools.lru_cache(maxsize=64)
def _public_key_of(secret_key: bytes) -> bytes:
    # A partner decrypts many subjects with one key; the check below then costs no base mult.
    return _group.mul_base(_group.check_scalar(secret_key, "domain key"), "domain key")


def decrypt(ct: Ciphertext, domain_key: bytes) -> bytes:
    """Decrypt to the 32-byte domain pseudonym ``C - y_d * B``.

    A key that does not belong to ``ct.public_key`` is refused, so a wrong key
    gives an error rather than a meaningless pseudonym.
    """
    if not isinstance(ct, Ciphertext):
        raise PseudonymError(f"expected a Ciphertext, not {type(ct).__name__}")
    if not isinstance(domain_key, bytes):  # unhashable input would never reach the check
        _group.check_scalar(domain_key, "domain key")
    if _public_key_of(domain_key) != ct.public_key:
        raise PseudonymError(
            "the domain key does not match the ciphertext's public key: "
            "the ciphertext was not transcrypted to this domain"
        )
    return _group.sub(ct.c, _group.mul(domain_key, ct.b, "decryption"), "decryption")


def pseudonym_hex(pseudonym: bytes) -> str:
    """The lowercase-hex form of a 32-byte pseudonym, as stored and logged."""
    if not isinstance(pseudonym, bytes) or len(pseudonym) != _group.POINT_BYTES:
        raise PseudonymError("a pseudonym must be 32 bytes")
    return pseudonym.hex()
