"""Key material of the pseudonym scheme and its key files.

Three JSON files, each with a ``format`` tag and lowercase-hex fields
(scalars are 32-byte little-endian, points 32-byte ristretto255 encodings):

- ``schakel-pep-federation/v1``: the key authority's file: ``y``, ``Y``, PS, RS.
- ``schakel-pep-transcryptor/v1``: a node's file: PS, RS and ``Y``; no decryption key.
- ``schakel-pep-domain/v1``: an organisation's file: its domain, ``y_d``, ``y_d*G`` and ``Y``.

Secret files are written with mode 0600, never over an existing file unless
forced, and refused on load when group or others may read them. The
secrets a party keeps for long (a domain key, a transcryptor's share) can be
sealed with a passphrase (:mod:`policy.pseudonyms.sealing`).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from policy.pseudonyms.domains import check_domain
from policy.pseudonyms.errors import KeyFileError, PseudonymError
from policy.pseudonyms.hazmat import group
from policy.pseudonyms.hazmat.factors import MIN_SECRET_BYTES, check_secret, rekey_factor
from policy.pseudonyms.sealing import is_sealed, read_passphrase, seal, unseal
from policy.pseudonyms.transcrypt import Transcryptor

FEDERATION_FORMAT = "schakel-pep-federation/v1"
TRANSCRYPTOR_FORMAT = "schakel-pep-transcryptor/v1"
DOMAIN_FORMAT = "schakel-pep-domain/v1"
SECRET_MODE = 0o600


def write_key_file(
    path: Path,
    document: dict[str, str],
    *,
    force: bool = False,
    passphrase_file: Path | None = None,
) -> None:
    """Write ``document`` as JSON to ``path`` with mode 0600, sealed when a passphrase is given.

    Without ``force`` an existing file is an error (checked atomically with
    O_EXCL); with it the file is replaced atomically through a temporary file.
    With ``passphrase_file`` the file is sealed (:mod:`policy.pseudonyms.sealing`).
    """
    written: dict[str, Any] = (
        document if passphrase_file is None else seal(document, read_passphrase(passphrase_file))
    )
    data = (json.dumps(written, indent=2, sort_keys=True) + "\n").encode()
    target = path if not force else path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    try:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, SECRET_MODE)
    except FileExistsError:
        raise KeyFileError(f"{path} already exists; pass --force to replace it") from None
    except OSError as exc:
        raise KeyFileError(f"cannot create {path}: {exc.strerror}") from None
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        if force:
            os.replace(target, path)
    except BaseException:
        target.unlink(missing_ok=True)
        raise


def read_key_file(
    path: Path, expected_format: str, passphrase_file: Path | None = None
) -> dict[str, Any]:
    """Read a key file, refusing one that group or others may read.

    A sealed file is opened with the passphrase in ``passphrase_file``; a
    sealed file without one, or a plain file with one, is refused.
    """
    try:
        mode = path.stat().st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise KeyFileError(
                f"{path} is accessible to group or others (mode {stat.S_IMODE(mode):04o}); "
                "run chmod 600 on it"
            )
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise KeyFileError(f"{path} does not exist") from None
    except OSError as exc:
        raise KeyFileError(f"cannot read {path}: {exc.strerror}") from None
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise KeyFileError(f"{path} is not a JSON key file") from None
    if not isinstance(document, dict):
        raise KeyFileError(f"{path} is not a {expected_format} key file")
    if is_sealed(document):
        if passphrase_file is None:
            raise KeyFileError(f"{path} is sealed with a passphrase: give its passphrase file")
        return unseal(document, expected_format, read_passphrase(passphrase_file), path)
    if document.get("format") != expected_format:
        raise KeyFileError(f"{path} is not a {expected_format} key file")
    if passphrase_file is not None:
        raise KeyFileError(
            f"{path} is not sealed although a passphrase file is given; seal it "
            "(schakel certs pep seal) or drop the passphrase file"
        )
    return document


def field_bytes(document: dict[str, Any], name: str, path: Path) -> bytes:
    """The hex field ``name`` of a key file as bytes; KeyFileError when missing or not hex."""
    value = document.get(name)
    if not isinstance(value, str):
        raise KeyFileError(f"{path}: field {name!r} is missing or not a string")
    try:
        return bytes.fromhex(value)
    except ValueError:
        raise KeyFileError(f"{path}: field {name!r} is not hex") from None


@contextlib.contextmanager
def in_file(path: Path) -> Iterator[None]:
    """Report a bad value as a problem of the file it came from."""
    try:
        yield
    except PseudonymError as exc:
        raise KeyFileError(f"{path}: {exc}") from None


def _require_pair(path: Path, secret_key: bytes, public_key: bytes, what: str) -> None:
    if group.mul_base(secret_key, what) != public_key:
        raise KeyFileError(f"{path}: the {what} does not match its secret key")


@dataclass(frozen=True)
class FederationKeys:
    """The key authority's material: global key pair ``y``/``Y`` and transcryptor secrets."""

    global_secret_key: bytes = field(repr=False)
    global_public_key: bytes
    pseudonymisation_secret: bytes = field(repr=False)
    rekey_secret: bytes = field(repr=False)

    @classmethod
    def generate(cls) -> FederationKeys:
        """Fresh keys from libsodium's and the OS's CSPRNG."""
        y = group.random_scalar()
        return cls(
            global_secret_key=y,
            global_public_key=group.mul_base(y, "global key"),
            pseudonymisation_secret=secrets.token_bytes(MIN_SECRET_BYTES),
            rekey_secret=secrets.token_bytes(MIN_SECRET_BYTES),
        )

    def domain_key(self, domain: str) -> bytes:
        """``y_d = k_d * y``: the decryption key of ``domain``, handed over at enrolment."""
        k = rekey_factor(self.rekey_secret, check_domain(domain))
        return group.scalar_mul(k, self.global_secret_key)

    def domain_key_material(self, domain: str) -> DomainKey:
        """Everything an organisation needs: its key, its public key and ``Y``."""
        y_d = self.domain_key(domain)
        return DomainKey(
            domain=domain,
            secret_key=y_d,
            public_key=group.mul_base(y_d, "domain key"),
            global_public_key=self.global_public_key,
        )

    def transcryptor_keys(self) -> TranscryptorKeys:
        """The subset a node holds: PS, RS and ``Y``, without the global secret ``y``."""
        return TranscryptorKeys(
            self.pseudonymisation_secret, self.rekey_secret, self.global_public_key
        )

    def save(self, path: Path, *, force: bool = False) -> None:
        """Write the ``schakel-pep-federation/v1`` file (mode 0600)."""
        write_key_file(
            path,
            {
                "format": FEDERATION_FORMAT,
                "global_secret_key": self.global_secret_key.hex(),
                "global_public_key": self.global_public_key.hex(),
                "pseudonymisation_secret": self.pseudonymisation_secret.hex(),
                "rekey_secret": self.rekey_secret.hex(),
            },
            force=force,
        )

    @classmethod
    def load(cls, path: Path) -> FederationKeys:
        """Read and check a ``schakel-pep-federation/v1`` file."""
        doc = read_key_file(path, FEDERATION_FORMAT)
        with in_file(path):
            y = group.check_scalar(field_bytes(doc, "global_secret_key", path), "global_secret_key")
            big_y = group.check_point(
                field_bytes(doc, "global_public_key", path), "global_public_key"
            )
            ps = check_secret(field_bytes(doc, "pseudonymisation_secret", path), "the PS secret")
            rs = check_secret(field_bytes(doc, "rekey_secret", path), "the RS secret")
        _require_pair(path, y, big_y, "global public key")
        return cls(y, big_y, ps, rs)


@dataclass(frozen=True)
class TranscryptorKeys:
    """What a node loads from its config: PS, RS and the global public key ``Y``."""

    pseudonymisation_secret: bytes = field(repr=False)
    rekey_secret: bytes = field(repr=False)
    global_public_key: bytes

    def transcryptor(self) -> Transcryptor:
        """A transcryptor that also checks every input's source key against ``Y``."""
        return Transcryptor(
            self.pseudonymisation_secret,
            self.rekey_secret,
            global_public_key=self.global_public_key,
        )

    def save(self, path: Path, *, force: bool = False) -> None:
        """Write the ``schakel-pep-transcryptor/v1`` file (mode 0600)."""
        write_key_file(
            path,
            {
                "format": TRANSCRYPTOR_FORMAT,
                "pseudonymisation_secret": self.pseudonymisation_secret.hex(),
                "rekey_secret": self.rekey_secret.hex(),
                "global_public_key": self.global_public_key.hex(),
            },
            force=force,
        )

    @classmethod
    def load(cls, path: Path) -> TranscryptorKeys:
        """Read and check a ``schakel-pep-transcryptor/v1`` file."""
        doc = read_key_file(path, TRANSCRYPTOR_FORMAT)
        with in_file(path):
            ps = check_secret(field_bytes(doc, "pseudonymisation_secret", path), "the PS secret")
            rs = check_secret(field_bytes(doc, "rekey_secret", path), "the RS secret")
            big_y = group.check_point(
                field_bytes(doc, "global_public_key", path), "global_public_key"
            )
        return cls(ps, rs, big_y)


@dataclass(frozen=True)
class DomainKey:
    """An organisation's material: its domain id, ``y_d``, ``y_d*G`` and ``Y`` to encrypt to."""

    domain: str
    secret_key: bytes = field(repr=False)
    public_key: bytes
    global_public_key: bytes

    def save(self, path: Path, *, force: bool = False, passphrase_file: Path | None = None) -> None:
        """Write the ``schakel-pep-domain/v1`` file (mode 0600), sealed with a passphrase file."""
        write_key_file(
            path,
            {
                "format": DOMAIN_FORMAT,
                "domain": self.domain,
                "domain_secret_key": self.secret_key.hex(),
                "domain_public_key": self.public_key.hex(),
                "global_public_key": self.global_public_key.hex(),
            },
            force=force,
            passphrase_file=passphrase_file,
        )

    @classmethod
    def load(cls, path: Path, passphrase_file: Path | None = None) -> DomainKey:
        """Read and check a ``schakel-pep-domain/v1`` file, sealed or not."""
        doc = read_key_file(path, DOMAIN_FORMAT, passphrase_file)
        with in_file(path):
            domain = check_domain(doc.get("domain"))
            y_d = group.check_scalar(
                field_bytes(doc, "domain_secret_key", path), "domain_secret_key"
            )
            pub = group.check_point(
                field_bytes(doc, "domain_public_key", path), "domain_public_key"
            )
            big_y = group.check_point(
                field_bytes(doc, "global_public_key", path), "global_public_key"
            )
        _require_pair(path, y_d, pub, "domain public key")
        return cls(domain, y_d, pub, big_y)
