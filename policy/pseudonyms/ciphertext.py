"""The ciphertext of a subject point: a polymorphic pseudonym, and its wire forms.

A ciphertext is ``(B, C, P)``: ``B = rG``, ``C = M + rP``, and ``P`` the public
key it is currently encrypted under. Its wire form is the 96 bytes
``B || C || P``; in the API it is the ``EncryptedPseudonym`` message.
"""

from __future__ import annotations

from dataclasses import dataclass

from schakel.v1 import common_pb2

from policy.pseudonyms.errors import PseudonymError
from policy.pseudonyms.hazmat import group

CIPHERTEXT_BYTES = 3 * group.POINT_BYTES


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
        group.check_point(self.b, "ciphertext part B")
        group.check_point(self.c, "ciphertext part C")
        group.check_point(self.public_key, "ciphertext public key P")

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

    @classmethod
    def for_conversion(cls, msg: common_pb2.EncryptedPseudonym) -> Ciphertext:
        """An ``EncryptedPseudonym`` checked for length only, for an immediate conversion.

        A transcryptor's link multiplies B, C and P by secret scalars at once;
        libsodium refuses a non-canonical encoding or an identity product there
        (:class:`PseudonymError`), so the three point decodings of
        :meth:`from_proto` would only be done twice (~7% of a link).
        """
        if not isinstance(msg, common_pb2.EncryptedPseudonym):
            raise PseudonymError(f"expected an EncryptedPseudonym, not {type(msg).__name__}")
        for part, what in ((msg.b, "B"), (msg.c, "C"), (msg.public_key, "public key P")):
            if len(part) != group.POINT_BYTES:
                raise PseudonymError(f"ciphertext part {what} must be 32 bytes, got {len(part)}")
        return cls._trusted(msg.b, msg.c, msg.public_key)

    def to_proto(self) -> common_pb2.EncryptedPseudonym:
        """The ``EncryptedPseudonym`` message of the API."""
        return common_pb2.EncryptedPseudonym(b=self.b, c=self.c, public_key=self.public_key)

    @classmethod
    def from_proto(cls, msg: common_pb2.EncryptedPseudonym) -> Ciphertext:
        """Parse and validate an ``EncryptedPseudonym`` message; a missing field is an error."""
        if not isinstance(msg, common_pb2.EncryptedPseudonym):
            raise PseudonymError(f"expected an EncryptedPseudonym, not {type(msg).__name__}")
        return cls(msg.b, msg.c, msg.public_key)
