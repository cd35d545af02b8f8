"""The fact vault: AES-256-GCM sealing of facts delivered for a case.

A fact is stored as ``nonce || ciphertext`` with a fresh 96-bit random nonce.
The associated data binds the case id, the category and the row id, so a
row copied into another case or category, or a ciphertext swapped between
rows, fails authentication instead of decrypting as someone else's fact.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from gateway.cases.errors import CaseInputError, FactIntegrityError

KEY_BYTES = 32
NONCE_BYTES = 12
_AAD_LABEL = b"schakel/v1/fact-vault"
_HEX_KEY = re.compile(rb"^[0-9a-fA-F]{64}\s*$")


class FactVault:
    """Seals and opens fact bytes under one 256-bit key."""

    def __init__(self, key: bytes) -> None:
        """Use ``key``, exactly 32 bytes."""
        if not isinstance(key, bytes) or len(key) != KEY_BYTES:
            raise CaseInputError(f"fact vault key must be exactly {KEY_BYTES} bytes")
        self._aead = AESGCM(key)
        self.key_id = hashlib.sha256(_AAD_LABEL + b"|key-id|" + key).hexdigest()[:16]
        """A short, non-secret name of the key, stored beside each row."""

    @classmethod
    def from_key_file(cls, path: Path) -> FactVault:
        """Read a key file: 32 raw bytes, or 64 hex digits with an optional newline."""
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise CaseInputError(
                f"fact vault key file {path}: cannot read: {exc.strerror}"
            ) from None
        if _HEX_KEY.match(raw):
            return cls(bytes.fromhex(raw.decode().strip()))
        if len(raw) == KEY_BYTES:
            return cls(raw)
        raise CaseInputError(
            f"fact vault key file {path}: expected {KEY_BYTES} raw bytes or 64 hex digits"
        )

    @staticmethod
    def generate_key_file(path: Path) -> None:
        """Write a fresh random key as hex to a new file readable by the owner only."""
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(AESGCM.generate_key(bit_length=256).hex() + "\n")

    @staticmethod
    def _aad(case_id: str, category: str, fact_id: str) -> bytes:
        parts = [_AAD_LABEL, case_id.encode(), category.encode(), fact_id.encode()]
        # Length prefixes keep ("ab", "c") and ("a", "bc") apart.
        return b"".join(len(p).to_bytes(2, "big") + p for p in parts)

    def seal(self, case_id: str, category: str, fact_id: str, plaintext: bytes) -> bytes:
        """Encrypt ``plaintext`` for the row ``fact_id`` of ``category`` in ``case_id``."""
        nonce = os.urandom(NONCE_BYTES)
        return nonce + self._aead.encrypt(nonce, plaintext, self._aad(case_id, category, fact_id))

    def open(
        self, case_id: str, category: str, fact_id: str, sealed: bytes, key_id: str = ""
    ) -> bytes:
        """Decrypt a sealed row; raise FactIntegrityError if it does not authenticate."""
        if key_id and key_id != self.key_id:
            raise FactIntegrityError(
                f"fact {fact_id} of case {case_id} is sealed under key {key_id}, "
                f"but this vault holds key {self.key_id}"
            )
        if len(sealed) < NONCE_BYTES + 16:
            raise FactIntegrityError(f"fact {fact_id} of case {case_id} is truncated")
        try:
            return self._aead.decrypt(
                sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], self._aad(case_id, category, fact_id)
            )
        except InvalidTag:
            raise FactIntegrityError(
                f"fact {fact_id} of case {case_id} failed authentication: the row was altered, "
                "moved to another case or category, or sealed under another key"
            ) from None
