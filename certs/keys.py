"""Private key files at rest: PKCS#8 PEM, encrypted with a passphrase read from a file.

A key file is either encrypted PKCS#8 (``-----BEGIN ENCRYPTED PRIVATE KEY-----``,
PBES2 with PBKDF2 and AES-256-CBC) opened with the passphrase in its
``*_passphrase_file``, or, without a passphrase file, unencrypted PKCS#8.
A file that does not match its configuration is refused: an unencrypted key
where a passphrase is configured means someone replaced the key.

The passphrase file holds the passphrase on its first line (a trailing
newline is not part of it); keep it apart from the key, e.g. as a secret
mounted by the service manager.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from policy.pseudonyms import sealing

_ENCRYPTED = b"-----BEGIN ENCRYPTED PRIVATE KEY-----"


class KeyFileError(ValueError):
    """A key or passphrase file is unusable; the message names the file and why."""

    def __init__(self, path: Path, message: str) -> None:
        super().__init__(message)
        self.path = path
        """The file that is unusable: the key or its passphrase file."""


def read_passphrase(path: Path) -> bytes:
    """The passphrase in ``path``: its first line, without the line end."""
    try:
        return sealing.read_passphrase(path)
    except sealing.PassphraseFileError as exc:
        raise KeyFileError(path, str(exc)) from None


def is_encrypted(data: bytes) -> bool:
    """True for an encrypted PKCS#8 PEM key."""
    return data.lstrip().startswith(_ENCRYPTED)


def load_private_key(path: Path, passphrase_file: Path | None = None) -> PrivateKeyTypes:
    """Read a PEM private key, decrypting it with the passphrase in ``passphrase_file``."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise KeyFileError(path, f"{path}: cannot read: {exc.strerror}") from exc
    encrypted = is_encrypted(data)
    if encrypted and passphrase_file is None:
        raise KeyFileError(path, f"{path} is encrypted: give its passphrase file")
    if not encrypted and passphrase_file is not None:
        raise KeyFileError(
            path,
            f"{path} is not encrypted although a passphrase file is given; "
            "encrypt it (schakel certs encrypt-key) or drop the passphrase file",
        )
    password = read_passphrase(passphrase_file) if passphrase_file is not None else None
    try:
        return serialization.load_pem_private_key(data, password=password)
    except ValueError as exc:
        reason = "wrong passphrase, or" if encrypted else "it is"
        raise KeyFileError(
            path, f"{path}: cannot load the key ({reason} not a PKCS#8 PEM key)"
        ) from exc
    except TypeError as exc:
        raise KeyFileError(path, f"{path}: not a PEM private key") from exc


def private_key_pem(key: PrivateKeyTypes, passphrase: bytes | None = None) -> bytes:
    """``key`` as PKCS#8 PEM, encrypted when a passphrase is given."""
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase)
        if passphrase is not None
        else serialization.NoEncryption()
    )
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )


def atomic_write(path: Path, data: bytes, *, mode: int = 0o644) -> None:
    """Write ``data`` beside ``path`` and rename it over, so no reader sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_key_file(
    path: Path, key: PrivateKeyTypes, *, passphrase: bytes | None = None, force: bool = False
) -> None:
    """Write ``key`` as PKCS#8 PEM with mode 0600, encrypted when a passphrase is given.

    Refuses to replace an existing file unless ``force``.
    """
    if path.exists() and not force:
        raise KeyFileError(path, f"{path} already exists; pass --force to replace it")
    atomic_write(path, private_key_pem(key, passphrase), mode=0o600)
