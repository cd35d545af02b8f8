"""Pseudonym key files at rest: a JSON key file sealed with a passphrase read from a file.

A sealed file is JSON with ``format`` ``schakel-pep-sealed/v1``; it holds
the plain key file (e.g. a ``schakel-pep-transcryptor-share/v1``) encrypted
with AES-256-GCM under a key derived from the passphrase with scrypt. The
header (format version, the sealed file's own format as its purpose, the
scrypt parameters, salt and nonce) is the associated data, so a file whose
header was altered, or a sealed domain key offered as a share, fails to
open just as a wrong passphrase does. Without a passphrase file a key file
is plain JSON; a file that does not match its configuration is refused,
because a plain file where a passphrase is configured means someone
replaced the key.

The passphrase file holds the passphrase on its first line (a trailing
newline is not part of it); keep it apart from the key file, e.g. as a
secret the service manager mounts.
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from policy.pseudonyms.errors import KeyFileError

SEALED_FORMAT = "schakel-pep-sealed/v1"
MIN_PASSPHRASE = 12
"""Characters a passphrase needs at least; no key derivation makes a short one strong."""
SCRYPT_N = 2**15
"""scrypt cost: about 32 MiB and 0.1 s per opening, so guessing passphrases stays slow."""
SCRYPT_R = 8
SCRYPT_P = 1
_MAX_N = 2**20
"""The largest cost a file may ask for, so an altered header cannot exhaust memory."""


class PassphraseFileError(KeyFileError):
    """The passphrase file itself is unusable (unreadable, or too short a passphrase)."""


def read_passphrase(path: Path) -> bytes:
    """The passphrase in ``path``: its first line, without the line end."""
    try:
        text = path.read_bytes()
    except OSError as exc:
        raise PassphraseFileError(f"passphrase file {path}: cannot read: {exc.strerror}") from None
    passphrase = text.split(b"\n", 1)[0].removesuffix(b"\r")
    if len(passphrase) < MIN_PASSPHRASE:
        raise PassphraseFileError(
            f"passphrase file {path}: the passphrase must be at least {MIN_PASSPHRASE} characters"
        )
    return passphrase


def _associated_data(header: dict[str, Any]) -> bytes:
    return json.dumps(header, sort_keys=True, separators=(",", ":")).encode()


def _key(passphrase: bytes, salt: bytes, n: int, r: int, p: int) -> bytes:
    return Scrypt(salt=salt, length=32, n=n, r=r, p=p).derive(passphrase)


def seal(document: dict[str, str], passphrase: bytes) -> dict[str, Any]:
    """The sealed file of the key file ``document`` (which has a ``format``)."""
    salt, nonce = secrets.token_bytes(16), secrets.token_bytes(12)
    header: dict[str, Any] = {
        "format": SEALED_FORMAT,
        "purpose": document["format"],
        "kdf": {"name": "scrypt", "n": SCRYPT_N, "r": SCRYPT_R, "p": SCRYPT_P, "salt": salt.hex()},
        "cipher": "aes-256-gcm",
        "nonce": nonce.hex(),
    }
    plain = json.dumps(document, sort_keys=True).encode()
    key = _key(passphrase, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)
    sealed = AESGCM(key).encrypt(nonce, plain, _associated_data(header))
    return {**header, "ciphertext": sealed.hex()}


def is_sealed(document: dict[str, Any]) -> bool:
    """True for a sealed key file."""
    return document.get("format") == SEALED_FORMAT


def _hex(value: object, size: int | None = None) -> bytes:
    if not isinstance(value, str):
        raise ValueError("not a string")
    raw = bytes.fromhex(value)
    if size is not None and len(raw) != size:
        raise ValueError("wrong length")
    return raw


def unseal(
    document: dict[str, Any], expected_format: str, passphrase: bytes, path: Path
) -> dict[str, Any]:
    """The plain key file inside the sealed ``document`` read from ``path``.

    KeyFileError when it is not a sealed ``expected_format`` file, or when it
    does not open: a wrong passphrase, or a file altered since it was sealed.
    """
    header = {k: v for k, v in document.items() if k != "ciphertext"}
    if header.get("purpose") != expected_format:
        raise KeyFileError(f"{path} is not a sealed {expected_format} key file")
    kdf = header.get("kdf")
    try:
        if not isinstance(kdf, dict) or kdf.get("name") != "scrypt":
            raise ValueError("unknown key derivation")
        n, r, p = kdf.get("n"), kdf.get("r"), kdf.get("p")
        if (
            not (isinstance(n, int) and 2 <= n <= _MAX_N and n & (n - 1) == 0 and r == SCRYPT_R)
            or p != SCRYPT_P
        ):
            raise ValueError("scrypt parameters out of range")
        if header.get("cipher") != "aes-256-gcm" or set(header) != {
            "format",
            "purpose",
            "kdf",
            "cipher",
            "nonce",
        }:
            raise ValueError("unknown cipher or fields")
        salt = _hex(kdf.get("salt"), 16)
        nonce = _hex(header.get("nonce"), 12)
        sealed = _hex(document.get("ciphertext"))
    except ValueError:
        raise KeyFileError(f"{path} is not a well-formed sealed key file") from None
    try:
        plain = AESGCM(_key(passphrase, salt, n, r, p)).decrypt(
            nonce, sealed, _associated_data(header)
        )
    except InvalidTag:
        raise KeyFileError(
            f"{path}: cannot open it: wrong passphrase, or the file was altered"
        ) from None
    inner = json.loads(plain)
    if not isinstance(inner, dict) or inner.get("format") != expected_format:
        raise KeyFileError(f"{path} is not a {expected_format} key file")
    return inner
