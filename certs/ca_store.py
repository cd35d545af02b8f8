"""A federation CA kept in a directory: key, certificate, issuance and revocation index.

Layout of a CA directory::

    ca.pem       the root certificate (distribute to every node and partner)
    ca.key       its private key (0600; PKCS#8, encrypted when the CA was made
                 with a passphrase file; keep this directory offline), or
    ca.pkcs11    instead of ca.key: the PKCS#11 URI of a key kept in an HSM
    index.json   every issued serial with its identity URI and expiry, every
                 revoked serial with time and reason, and the last CRL number
    crl.pem      the last published CRL (``schakel certs crl``)

Private keys are written 0600 and never replace an existing file unless
the caller passes ``force``.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from certs import hsm
from certs.authority import CaKey, Validity, build_crl, certificate_for, create_root_ca, new_key
from certs.enrol import Request
from certs.identity import Identity, PeerKind, parse_uri, transcryptor_dns_name
from certs.keys import KeyFileError, atomic_write, load_private_key, read_passphrase, write_key_file

CA_CERT = "ca.pem"
CA_KEY = "ca.key"
CA_PKCS11 = "ca.pkcs11"
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


def write_private_key(
    path: Path, key: CaKey, *, force: bool = False, passphrase: bytes | None = None
) -> None:
    """Write ``key`` as PKCS#8 PEM with mode 0600, encrypted when a passphrase is given.

    Refuses to replace an existing file unless ``force``; with ``force`` the
    new key is written beside it and renamed over it, so a crash never
    leaves a half-written key.
    """
    try:
        write_key_file(path, key, passphrase=passphrase, force=force)
    except KeyFileError as exc:
        raise CaError(str(exc)) from exc


def write_certificate(path: Path, cert: x509.Certificate, *, force: bool = False) -> None:
    """Write ``cert`` as PEM, refusing to replace an existing file unless ``force``."""
    if path.exists() and not force:
        raise CaError(f"{path} already exists; pass --force to replace it")
    atomic_write(path, cert.public_bytes(serialization.Encoding.PEM))


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
    """Where an issued certificate (and, when the CA made it, its key) was written."""

    cert: x509.Certificate
    cert_path: Path
    key_path: Path | None


def default_file_name(identity: Identity) -> str:
    """File stem for an issued identity, e.g. ``politie-rr`` or ``zvh-rr-procesregisseur``."""
    if identity.kind is PeerKind.NODE:
        return f"node-{identity.node_id}"
    if identity.kind is PeerKind.OFFICER:
        return f"{identity.node_id}-{identity.role}"
    if identity.kind in (PeerKind.COLLECTOR, PeerKind.TRANSCRYPTOR):
        return f"{identity.kind}-{identity.org_id}"
    return identity.org_id


def _load_ca_key(directory: Path, passphrase_file: Path | None) -> CaKey:
    uri_path, key_path = directory / CA_PKCS11, directory / CA_KEY
    if uri_path.is_file():
        try:
            return hsm.load_ec_key(uri_path.read_text(encoding="utf-8").strip())
        except hsm.HsmError as exc:
            raise CaError(f"{uri_path}: {exc}") from exc
    try:
        key = load_private_key(key_path, passphrase_file)
    except KeyFileError as exc:
        raise CaError(str(exc)) from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise CaError(f"{key_path}: the CA key must be an EC key")
    return key


class CaStore:
    """An opened CA directory."""

    def __init__(self, directory: Path, key: CaKey, cert: x509.Certificate) -> None:
        self.directory = directory
        self.key = key
        self.cert = cert

    @classmethod
    def init(
        cls,
        directory: Path,
        name: str,
        *,
        days: int = 3650,
        force: bool = False,
        passphrase_file: Path | None = None,
        pkcs11_uri: str | None = None,
    ) -> CaStore:
        """Create a new root CA in ``directory`` (refuses to replace one unless ``force``).

        The key is made in the HSM that ``pkcs11_uri`` names (or, when the
        token already holds a key pair of that label, that one is used), or
        else written to ``ca.key``, encrypted with the passphrase in
        ``passphrase_file`` when one is given.
        """
        if days < 1:
            raise CaError(f"--days must be at least 1, not {days}")
        key_path, uri_path = directory / CA_KEY, directory / CA_PKCS11
        for path in (key_path, uri_path):
            if path.exists() and not force:
                raise CaError(f"{path} already exists; pass --force to replace the CA")
        directory.mkdir(parents=True, exist_ok=True)
        key: CaKey
        try:
            if pkcs11_uri is not None:
                try:
                    key = hsm.load_ec_key(pkcs11_uri)
                except hsm.HsmError:
                    key = hsm.generate_ec_key(pkcs11_uri)
            else:
                passphrase = read_passphrase(passphrase_file) if passphrase_file else None
                key = new_key()
        except (hsm.HsmError, KeyFileError) as exc:
            raise CaError(str(exc)) from exc
        key, cert = create_root_ca(name, valid_days=days, key=key)
        if pkcs11_uri is not None:
            atomic_write(uri_path, pkcs11_uri.encode() + b"\n", mode=0o600)
            key_path.unlink(missing_ok=True)
        else:
            write_private_key(key_path, key, force=force, passphrase=passphrase)
            uri_path.unlink(missing_ok=True)
        write_certificate(directory / CA_CERT, cert, force=True)
        store = cls(directory, key, cert)
        store._save_index({"issued": {}, "revoked": {}, "crl_number": 0})
        return store

    @classmethod
    def open(cls, directory: Path, *, passphrase_file: Path | None = None) -> CaStore:
        """Open the CA in ``directory`` (its key from ``ca.pkcs11`` or ``ca.key``)."""
        cert_path = directory / CA_CERT
        has_key = (directory / CA_KEY).is_file() or (directory / CA_PKCS11).is_file()
        if not has_key or not cert_path.is_file():
            raise CaError(
                f"no CA in {directory} (expected {CA_CERT} and {CA_KEY} or {CA_PKCS11}); "
                "run init-ca"
            )
        key = _load_ca_key(directory, passphrase_file)
        cert = load_certificate(cert_path)
        if cert.public_key() != key.public_key():
            raise CaError(f"the CA key in {directory} does not belong to {cert_path}")
        return cls(directory, key, cert)

    def _load_index(self) -> dict[str, Any]:
        path = self.directory / INDEX
        if not path.exists():
            return {"issued": {}, "revoked": {}, "crl_number": 0}
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise CaError(f"{path}: unreadable revocation index: {exc}") from exc
        if not isinstance(data, dict) or not {"issued", "revoked"} <= set(data) <= {
            "issued",
            "revoked",
            "crl_number",
        }:
            raise CaError(f"{path}: not a Schakel CA index")
        data.setdefault("crl_number", 0)
        return data

    def _save_index(self, index: dict[str, Any]) -> None:
        atomic_write(self.directory / INDEX, json.dumps(index, indent=2, sort_keys=True).encode())

    def _check_ids(self, identity: Identity, index: dict[str, Any]) -> None:
        """Refuse an id that would collide with another kind's: node and org ids share one
        namespace, because both are pseudonymisation domains and both name callers."""
        nodes, orgs = set(), set()
        for entry in index["issued"].values():
            kind, parts = parse_uri(entry["uri"])
            if kind is PeerKind.NODE:
                nodes.add(parts[0])
            elif kind is PeerKind.PARTNER:
                orgs.add(parts[1])
        if identity.kind is PeerKind.PARTNER and identity.org_id in nodes | {identity.node_id}:
            raise CaError(
                f"organisation id {identity.org_id!r} is the id of a node of this federation; "
                "a partner needs an id no node has"
            )
        if identity.kind is PeerKind.NODE and identity.node_id in orgs:
            raise CaError(
                f"node id {identity.node_id!r} is the organisation id of a partner of this "
                "federation; a node needs an id no organisation has"
            )

    def _validity(self, days: int) -> Validity:
        if days < 1:
            raise CaError(f"--days must be at least 1, not {days}")
        ca_end = self.cert.not_valid_after_utc
        validity = Validity.days(days)
        if validity.not_after > ca_end:
            raise CaError(f"--days {days} would outlive the CA, which expires {ca_end:%Y-%m-%d}")
        return validity

    def _certify(
        self, identity: Identity, public_key: ec.EllipticCurvePublicKey, days: int, dns: list[str]
    ) -> x509.Certificate:
        """Check ids, issue and record; the caller writes the files."""
        validity = self._validity(days)
        index = self._load_index()
        self._check_ids(identity, index)
        if identity.kind is PeerKind.NODE and node_dns_name(identity.node_id) not in dns:
            dns.append(node_dns_name(identity.node_id))
        pinned = transcryptor_dns_name(identity.org_id)
        if identity.kind is PeerKind.TRANSCRYPTOR and pinned not in dns:
            dns.append(pinned)
        cert = certificate_for(
            self.key, self.cert, identity, public_key, validity=validity, dns_names=dns
        )
        index["issued"][format_serial(cert.serial_number)] = {
            "uri": identity.uri,
            "roles": sorted(identity.roles),
            "not_after": cert.not_valid_after_utc.isoformat(),
        }
        self._save_index(index)
        return cert

    def issue(
        self,
        identity: Identity,
        out_dir: Path,
        *,
        days: int,
        dns_names: tuple[str, ...] = (),
        name: str | None = None,
        force: bool = False,
        passphrase_file: Path | None = None,
    ) -> Issued:
        """Make a key and issue a certificate for ``identity`` into ``out_dir`` (the dev PKI).

        Writes ``<name>.pem`` and ``<name>.key`` (encrypted with the
        passphrase in ``passphrase_file`` when given). Node certificates also
        carry :func:`node_dns_name`, transcryptor certificates
        :func:`transcryptor_dns_name`. Nothing is written when either file
        exists (unless ``force``). In production use :meth:`sign` instead,
        so that the key never leaves its owner.
        """
        stem = name or default_file_name(identity)
        cert_path, key_path = out_dir / f"{stem}.pem", out_dir / f"{stem}.key"
        for path in (cert_path, key_path):
            if path.exists() and not force:
                raise CaError(f"{path} already exists; pass --force to replace it")
        try:
            passphrase = read_passphrase(passphrase_file) if passphrase_file else None
        except KeyFileError as exc:
            raise CaError(str(exc)) from exc
        key = new_key()
        cert = self._certify(identity, key.public_key(), days, list(dns_names))
        write_private_key(key_path, key, force=force, passphrase=passphrase)
        write_certificate(cert_path, cert, force=force)
        return Issued(cert, cert_path, key_path)

    def sign(self, request: Request, out: Path, *, days: int, force: bool = False) -> Issued:
        """Issue a certificate for a checked signing request (:func:`certs.enrol.check_request`).

        ``out`` is the certificate file to write.
        """
        if out.exists() and not force:
            raise CaError(f"{out} already exists; pass --force to replace it")
        cert = self._certify(request.identity, request.public_key, days, list(request.dns_names))
        write_certificate(out, cert, force=force)
        return Issued(cert, out, None)

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
        """Sign a CRL of every revoked serial and write it (default ``<ca-dir>/crl.pem``).

        Every CRL gets a higher CRL number than the last one this CA
        published: the signing time in microseconds, or the last number plus
        one when the clock went back.
        """
        if next_update_days < 1:
            raise CaError(f"--next-update-days must be at least 1, not {next_update_days}")
        index = self._load_index()
        now = int(dt.datetime.now(dt.UTC).timestamp() * 1_000_000)
        number = max(now, int(index["crl_number"]) + 1)
        crl = build_crl(
            self.key,
            self.cert,
            self.revoked(),
            next_update_days=next_update_days,
            number=number,
        )
        index["crl_number"] = number
        self._save_index(index)
        path = out or self.directory / CRL
        # Nodes watch this file: the atomic rename means they never read half a CRL.
        atomic_write(path, crl.public_bytes(serialization.Encoding.PEM))
        return path


def _signed_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True
