"""A federation CA kept in a directory: key, certificate, issuance and revocation index.

Layout of a CA directory::

    ca.pem       the root certificate (distribute to every node and partner)
    ca.key       its private key (0600; keep this directory offline)
    index.json   every issued serial with its identity URI and expiry, and
                 every revoked serial with time and reason
    crl.pem      the last published CRL (``schakel certs crl``)

Private keys are written 0600 and never replace an existing file unless
the caller passes ``force``.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from certs.authority import CaKey, Validity, build_crl, create_root_ca, issue
from certs.identity import Identity, PeerKind

CA_CERT = "ca.pem"
CA_KEY = "ca.key"
INDEX = "index.json"
CRL = "crl.pem"

REVOCATION_REASONS = frozenset(
    {"unspecified", "key-compromise", "superseded", "cessation-of-operation", "affiliation-changed"}
)


class CaError(Exception):
    """A CA operation cannot be done; the message says why and what to do."""


def node_dns_name(node_id: str) -> str:
    """The DNS SAN every node certificate carries, which clients pin with the node id.

    ``.invalid`` is reserved (RFC 2606), so the name never resolves and never
    collides with a real host name given through ``--dns``.
    """
    return f"{node_id}.node.schakel.invalid"


def format_serial(serial: int) -> str:
    """A serial number as lowercase hex, the form ``show`` prints and ``revoke`` takes."""
    return f"{serial:x}"


def parse_serial(text: str) -> int:
    """Read a serial in hex, with or without ``0x`` and ``:`` separators."""
    cleaned = text.strip().lower().removeprefix("0x").replace(":", "")
    try:
        value = int(cleaned, 16)
    except ValueError as exc:
        raise CaError(f"{text!r} is neither a certificate file nor a hex serial number") from exc
    if value <= 0:
        raise CaError(f"serial {text!r} must be positive")
    return value


def write_private_key(path: Path, key: CaKey, *, force: bool = False) -> None:
    """Write ``key`` as unencrypted PKCS#8 PEM with mode 0600.

    Refuses to replace an existing file unless ``force``; with ``force`` the
    new key is written beside it and renamed over it, so a crash never
    leaves a half-written key.
    """
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    if path.exists() and not force:
        raise CaError(f"{path} already exists; pass --force to replace it")
    _atomic_write(path, pem, mode=0o600)


def _atomic_write(path: Path, data: bytes, *, mode: int = 0o644) -> None:
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


def write_certificate(path: Path, cert: x509.Certificate, *, force: bool = False) -> None:
    """Write ``cert`` as PEM, refusing to replace an existing file unless ``force``."""
    if path.exists() and not force:
        raise CaError(f"{path} already exists; pass --force to replace it")
    _atomic_write(path, cert.public_bytes(serialization.Encoding.PEM))


def load_certificate(path: Path) -> x509.Certificate:
    """Read one PEM (or DER) certificate; CaError when the file is not one."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CaError(f"{path}: cannot read: {exc.strerror}") from exc
    try:
        if data.lstrip().startswith(b"-----"):
            return x509.load_pem_x509_certificate(data)
        return x509.load_der_x509_certificate(data)
    except ValueError as exc:
        raise CaError(f"{path}: not a PEM or DER certificate") from exc


@dataclass(frozen=True)
class Issued:
    """Where an issued certificate and its key were written."""

    cert: x509.Certificate
    cert_path: Path
    key_path: Path


def default_file_name(identity: Identity) -> str:
    """File stem for an issued identity, e.g. ``politie-rr`` or ``zvh-rr-procesregisseur``."""
    if identity.kind is PeerKind.NODE:
        return f"node-{identity.node_id}"
    if identity.kind is PeerKind.COLLECTOR:
        return f"collector-{identity.org_id}"
    if identity.kind is PeerKind.OFFICER:
        return f"{identity.org_id}-{'-'.join(sorted(identity.roles))}"
    return identity.org_id


class CaStore:
    """An opened CA directory."""

    def __init__(self, directory: Path, key: CaKey, cert: x509.Certificate) -> None:
        self.directory = directory
        self.key = key
        self.cert = cert

    @classmethod
    def init(cls, directory: Path, name: str, *, days: int = 3650, force: bool = False) -> CaStore:
        """Create a new root CA in ``directory`` (refuses to replace one unless ``force``)."""
        if days < 1:
            raise CaError(f"--days must be at least 1, not {days}")
        key_path = directory / CA_KEY
        if key_path.exists() and not force:
            raise CaError(f"{key_path} already exists; pass --force to replace the CA")
        directory.mkdir(parents=True, exist_ok=True)
        key, cert = create_root_ca(name, valid_days=days)
        write_private_key(key_path, key, force=force)
        write_certificate(directory / CA_CERT, cert, force=True)
        store = cls(directory, key, cert)
        store._save_index({"issued": {}, "revoked": {}})
        return store

    @classmethod
    def open(cls, directory: Path) -> CaStore:
        """Open the CA in ``directory``."""
        key_path, cert_path = directory / CA_KEY, directory / CA_CERT
        if not key_path.is_file() or not cert_path.is_file():
            raise CaError(f"no CA in {directory} (expected {CA_KEY} and {CA_CERT}); run init-ca")
        try:
            key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        except (ValueError, TypeError) as exc:
            raise CaError(f"{key_path}: not an unencrypted PEM private key") from exc
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise CaError(f"{key_path}: the CA key must be an EC key")
        cert = load_certificate(cert_path)
        if cert.public_key() != key.public_key():
            raise CaError(f"{key_path} does not belong to {cert_path}")
        return cls(directory, key, cert)

    def _load_index(self) -> dict[str, dict[str, Any]]:
        path = self.directory / INDEX
        if not path.exists():
            return {"issued": {}, "revoked": {}}
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise CaError(f"{path}: unreadable revocation index: {exc}") from exc
        if not isinstance(data, dict) or set(data) != {"issued", "revoked"}:
            raise CaError(f"{path}: not a Schakel CA index")
        return data

    def _save_index(self, index: dict[str, dict[str, Any]]) -> None:
        _atomic_write(self.directory / INDEX, json.dumps(index, indent=2, sort_keys=True).encode())

    def issue(
        self,
        identity: Identity,
        out_dir: Path,
        *,
        days: int,
        dns_names: tuple[str, ...] = (),
        name: str | None = None,
        force: bool = False,
    ) -> Issued:
        """Issue a certificate for ``identity`` into ``out_dir`` as ``<name>.pem``/``.key``.

        Node certificates also carry :func:`node_dns_name`. Nothing is written
        when either file exists (unless ``force``).
        """
        if days < 1:
            raise CaError(f"--days must be at least 1, not {days}")
        ca_end = self.cert.not_valid_after_utc
        validity = Validity.days(days)
        if validity.not_after > ca_end:
            raise CaError(f"--days {days} would outlive the CA, which expires {ca_end:%Y-%m-%d}")
        stem = name or default_file_name(identity)
        cert_path, key_path = out_dir / f"{stem}.pem", out_dir / f"{stem}.key"
        for path in (cert_path, key_path):
            if path.exists() and not force:
                raise CaError(f"{path} already exists; pass --force to replace it")
        names = list(dns_names)
        if identity.kind is PeerKind.NODE:
            names.append(node_dns_name(identity.node_id))
        key, cert = issue(self.key, self.cert, identity, validity=validity, dns_names=names)
        write_private_key(key_path, key, force=force)
        write_certificate(cert_path, cert, force=force)
        index = self._load_index()
        index["issued"][format_serial(cert.serial_number)] = {
            "uri": identity.uri,
            "roles": sorted(identity.roles),
            "not_after": cert.not_valid_after_utc.isoformat(),
        }
        self._save_index(index)
        return Issued(cert, cert_path, key_path)

    def serial_of(self, target: str) -> int:
        """The serial of ``target``: a certificate file issued by this CA, or a hex serial."""
        path = Path(target)
        if path.is_file():
            cert = load_certificate(path)
            if not _signed_by(cert, self.cert):
                raise CaError(f"{path} was not issued by the CA in {self.directory}")
            return cert.serial_number
        return parse_serial(target)

    def revoke(self, serial: int, reason: str = "unspecified") -> bool:
        """Record ``serial`` as revoked; False when it already was.

        A serial this CA never issued is refused, so a typo cannot pass silently.
        """
        if reason not in REVOCATION_REASONS:
            raise CaError(f"unknown reason {reason!r}; known: {sorted(REVOCATION_REASONS)}")
        index = self._load_index()
        key = format_serial(serial)
        if key not in index["issued"]:
            raise CaError(f"serial {key} was not issued by the CA in {self.directory}")
        if key in index["revoked"]:
            return False
        index["revoked"][key] = {
            "at": dt.datetime.now(dt.UTC).isoformat(),
            "reason": reason,
            "uri": index["issued"][key]["uri"],
        }
        self._save_index(index)
        return True

    def revoked(self) -> list[tuple[int, dt.datetime]]:
        """Every revoked serial with its revocation time."""
        return [
            (int(serial, 16), dt.datetime.fromisoformat(entry["at"]))
            for serial, entry in sorted(self._load_index()["revoked"].items())
        ]

    def publish_crl(self, out: Path | None = None, *, next_update_days: int = 7) -> Path:
        """Sign a CRL of every revoked serial and write it (default ``<ca-dir>/crl.pem``)."""
        if next_update_days < 1:
            raise CaError(f"--next-update-days must be at least 1, not {next_update_days}")
        crl = build_crl(self.key, self.cert, self.revoked(), next_update_days=next_update_days)
        path = out or self.directory / CRL
        # Nodes watch this file: the atomic rename means they never read half a CRL.
        _atomic_write(path, crl.public_bytes(serialization.Encoding.PEM))
        return path


def _signed_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True
