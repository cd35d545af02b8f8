"""TLS material for the node: certificates that rotate, the CRL, and TLS 1.3 only.

gRPC Python can neither reload a certificate by itself nor check a CRL, so
this module does both:

- :class:`ServerCertificates` is the fetcher gRPC calls before every
  handshake; it re-reads the files only when they change;
- :class:`ClientCertificates` gives outgoing channels the node's current
  client credentials, so a channel is rebuilt after a rotation;
- :class:`RevocationList` is consulted by the interceptor on every call and
  before every message a stream sends, re-reading the CRL file when it
  changes and refusing a CRL older than the one in force.

Private keys may be encrypted PKCS#8 (:mod:`certs.keys`); grpc core cannot
read those, so they are decrypted in memory and handed over unencrypted.
"""

from __future__ import annotations

import datetime as dt
import os
import threading
from dataclasses import dataclass
from pathlib import Path

import grpc
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import verification

from certs.authority import crl_number
from certs.ca_store import node_dns_name
from certs.identity import IdentityError, PeerKind, identity_from_certificate
from certs.keys import KeyFileError, load_private_key, private_key_pem
from gateway.logging import get_logger
from gateway.tracing import client_interceptors

log = get_logger("tls")

TLS_VERSION = "TLSv1.3"
"""The only TLS version the node speaks, as grpc names it in ``ssl_tls_version``."""

_Stamp = tuple[tuple[int, int, int], ...]


def _stamp(*paths: Path | None) -> _Stamp:
    """What identifies a version of the files: inode, size and mtime of each."""
    stamps = []
    for path in paths:
        if path is not None:
            st = os.stat(path)
            stamps.append((st.st_ino, st.st_size, st.st_mtime_ns))
    return tuple(stamps)


@dataclass(frozen=True)
class _Material:
    ca_pem: bytes
    cert_pem: bytes
    key_pem: bytes
    """Unencrypted, in memory only: grpc core cannot decrypt a key."""
    not_after: dt.datetime


class TlsFileError(ValueError):
    """A TLS file is unusable; ``key`` names its config key (``ca_file``, ``cert_file``...)."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


@dataclass(frozen=True)
class TlsFiles:
    """Where a certificate, its key (and the key's passphrase) and the trusted CA are."""

    ca_file: Path
    cert_file: Path
    key_file: Path
    passphrase_file: Path | None = None

    def stamp(self) -> _Stamp:
        """The files' current version."""
        return _stamp(self.ca_file, self.cert_file, self.key_file, self.passphrase_file)


def _read(key: str, path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise TlsFileError(key, f"cannot read {path}: {exc.strerror}") from exc


def check_node_certificate(
    cert: x509.Certificate, cas: list[x509.Certificate], node_id: str, files: TlsFiles
) -> None:
    """Refuse a node certificate that cannot work: another node's or kind's, from a
    foreign CA, or outside its validity. TlsFileError names ``cert_file``."""
    where = f"{files.cert_file}"
    try:
        identity = identity_from_certificate(cert)
    except IdentityError as exc:
        raise TlsFileError("cert_file", f"{where}: {exc}") from exc
    if identity.kind is not PeerKind.NODE or identity.node_id != node_id:
        raise TlsFileError(
            "cert_file", f"{where} is the certificate of {identity.uri}, not of this node {node_id}"
        )
    verifier = (
        verification.PolicyBuilder()
        .store(verification.Store(cas))
        .build_server_verifier(x509.DNSName(node_dns_name(node_id)))
    )
    try:
        verifier.verify(cert, [])
    except verification.VerificationError as exc:
        raise TlsFileError(
            "cert_file", f"{where} does not chain to the CA in {files.ca_file}: {exc}"
        ) from exc


def read_material(files: TlsFiles, node_id: str | None = None) -> _Material:
    """Read and cross-check CA, certificate and key; TlsFileError says which file is wrong.

    With ``node_id`` the certificate must also be that node's, chain to the
    CA and be valid now (:func:`check_node_certificate`).
    """
    ca_pem = _read("ca_file", files.ca_file)
    cert_pem = _read("cert_file", files.cert_file)
    try:
        cas = x509.load_pem_x509_certificates(ca_pem)
    except ValueError as exc:
        raise TlsFileError("ca_file", f"{files.ca_file} holds no PEM certificate") from exc
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
    except ValueError as exc:
        raise TlsFileError("cert_file", f"{files.cert_file} holds no PEM certificate") from exc
    try:
        key = load_private_key(files.key_file, files.passphrase_file)
    except KeyFileError as exc:
        which = "key_passphrase_file" if exc.path == files.passphrase_file else "key_file"
        raise TlsFileError(which, str(exc)) from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.public_key() != cert.public_key():
        raise TlsFileError("key_file", f"{files.key_file} does not belong to {files.cert_file}")
    if node_id is not None:
        check_node_certificate(cert, cas, node_id, files)
    return _Material(ca_pem, cert_pem, private_key_pem(key), cert.not_valid_after_utc)


class _Rotating:
    """Material re-read when its files change; a bad version is logged and ignored."""

    def __init__(self, files: TlsFiles, node_id: str | None) -> None:
        self.files = files
        self._node_id = node_id
        self._lock = threading.Lock()
        self._stamp = files.stamp()
        self._material = read_material(files, node_id)
        self.generation = 0
        """Incremented on every accepted rotation."""

    def _reload(self) -> bool:
        """True when new material was taken (call under the lock)."""
        try:
            stamp = self.files.stamp()
        except OSError as exc:
            log.error("tls_reload_failed", reason=f"cannot stat: {exc.strerror}")
            return False
        if stamp == self._stamp:
            return False
        self._stamp = stamp
        try:
            self._material = read_material(self.files, self._node_id)
        except TlsFileError as exc:
            log.error("tls_reload_failed", key=f"tls.{exc.key}", reason=str(exc))
            return False
        self.generation += 1
        log.info(
            "tls_rotated",
            use=type(self).__name__,
            generation=self.generation,
            not_after=self._material.not_after.isoformat(),
        )
        return True


class ServerCertificates(_Rotating):
    """The node's server certificate, key and client CA, reloaded when the files change.

    Call :meth:`credentials` once; gRPC then calls the instance before every
    handshake. A half-written or mismatched rotation (or, with ``node_id``, a
    certificate that is not this node's) is logged and ignored: the node
    keeps serving with the last good material.
    """

    def __init__(
        self,
        ca_file: Path,
        cert_file: Path,
        key_file: Path,
        *,
        node_id: str | None = None,
        passphrase_file: Path | None = None,
    ) -> None:
        super().__init__(TlsFiles(ca_file, cert_file, key_file, passphrase_file), node_id)

    @property
    def cert_pem(self) -> bytes:
        """The certificate the node currently serves."""
        return self._material.cert_pem

    def _config(self) -> grpc.ServerCertificateConfiguration:
        m = self._material
        return grpc.ssl_server_certificate_configuration(
            [(m.key_pem, m.cert_pem)], root_certificates=m.ca_pem
        )

    def credentials(self) -> grpc.ServerCredentials:
        """Server credentials that require a client certificate from the CA."""
        # grpc-stubs types the fetcher without the None that gRPC documents as "no change".
        return grpc.dynamic_ssl_server_credentials(
            self._config(),
            self,  # type: ignore[arg-type]
            require_client_authentication=True,
        )

    def __call__(self) -> grpc.ServerCertificateConfiguration | None:
        """The fetcher: a new configuration when the files changed, else None."""
        with self._lock:
            return self._config() if self._reload() else None


class ClientCertificates(_Rotating):
    """Client credentials for outgoing channels, rebuilt when the files change.

    :meth:`current` is cheap (a few ``stat`` calls); a caller keeps a channel
    for as long as the generation it was built with is current, so the next
    call after a rotation presents the new certificate. With ``node_id`` a
    rotation must also pass :func:`check_node_certificate`.
    """

    def __init__(
        self,
        ca_file: Path,
        cert_file: Path,
        key_file: Path,
        *,
        node_id: str | None = None,
        passphrase_file: Path | None = None,
    ) -> None:
        super().__init__(TlsFiles(ca_file, cert_file, key_file, passphrase_file), node_id)
        self._credentials = self._build()

    def _build(self) -> grpc.ChannelCredentials:
        m = self._material
        return grpc.ssl_channel_credentials(
            root_certificates=m.ca_pem, private_key=m.key_pem, certificate_chain=m.cert_pem
        )

    def current(self) -> tuple[int, grpc.ChannelCredentials]:
        """The generation and credentials in force, after re-reading changed files."""
        with self._lock:
            if self._reload():
                self._credentials = self._build()
            return self.generation, self._credentials


def credentials_now(
    credentials: grpc.ChannelCredentials | ClientCertificates,
) -> tuple[int, grpc.ChannelCredentials]:
    """Generation and credentials of either a rotating source or fixed credentials (0)."""
    if isinstance(credentials, ClientCertificates):
        return credentials.current()
    return 0, credentials


def load_crl(path: Path, ca_file: Path) -> x509.CertificateRevocationList:
    """Read a PEM or DER CRL and check it was signed by the CA in ``ca_file``."""
    data = path.read_bytes()
    try:
        crl = (
            x509.load_pem_x509_crl(data)
            if data.lstrip().startswith(b"-----")
            else x509.load_der_x509_crl(data)
        )
    except ValueError as exc:
        raise ValueError(f"{path}: not a PEM or DER CRL") from exc
    cas = x509.load_pem_x509_certificates(ca_file.read_bytes())
    for ca in cas:
        key = ca.public_key()
        if (
            crl.issuer == ca.subject
            and isinstance(key, ec.EllipticCurvePublicKey)
            and crl.is_signature_valid(key)
        ):
            return crl
    raise ValueError(f"{path}: CRL is not signed by the CA in {ca_file}")


class RevocationList:
    """Revoked serial numbers from a CRL file, re-read when the file changes.

    Only a CRL whose signature verifies against the CA and whose CRL number
    is not lower than the one in force replaces the current one; anything
    else is logged (``crl_reload_failed`` with the reason) and the last good
    list stays. ``number_file`` keeps the highest CRL number taken, so an
    older CRL cannot come back across a restart either. With no CRL file
    configured nothing is revoked.
    """

    def __init__(
        self, crl_file: Path | None, ca_file: Path, *, number_file: Path | None = None
    ) -> None:
        self._crl_file = crl_file
        self._ca_file = ca_file
        self._number_file = number_file
        self._lock = threading.Lock()
        self._stamp: _Stamp | None = None
        self._revoked: frozenset[int] = frozenset()
        self._loaded = False
        self._number = self._stored_number()
        self._next_update: dt.datetime | None = None
        self._stale_logged = False
        if crl_file is not None:
            self._stamp = _stamp(crl_file)
            self._install(load_crl(crl_file, ca_file))

    @property
    def number(self) -> int:
        """The CRL number in force (-1 before any CRL)."""
        return self._number

    def _stored_number(self) -> int:
        if self._number_file is None or not self._number_file.exists():
            return -1
        text = self._number_file.read_text(encoding="ascii").strip()
        if not text.isdigit():
            raise ValueError(f"{self._number_file}: not a CRL number")
        return int(text)

    def _install(self, crl: x509.CertificateRevocationList) -> None:
        """Take ``crl`` in force; ValueError says why not."""
        number = crl_number(crl)
        revoked = frozenset(entry.serial_number for entry in crl)
        if number is None:
            raise ValueError(
                "the CRL carries no CRL number, so it cannot be told from an older one; "
                "publish a new one with `schakel certs crl`"
            )
        if number < self._number:
            raise ValueError(
                f"CRL number {number} is lower than {self._number}, the one in force: "
                "an older CRL may not replace a newer one"
            )
        if number == self._number and self._loaded and revoked != self._revoked:
            raise ValueError(
                f"CRL number {number} is the one in force, but the CRL lists other serials"
            )
        self._loaded = True
        self._revoked = revoked
        self._next_update = crl.next_update_utc
        self._stale_logged = False
        if number > self._number and self._number_file is not None:
            self._number_file.parent.mkdir(parents=True, exist_ok=True)
            self._number_file.write_text(f"{number}\n", encoding="ascii")
        self._number = number

    def refresh(self) -> None:
        """Re-read the CRL if its file changed since the last look."""
        if self._crl_file is None:
            return
        with self._lock:
            self._refresh(self._crl_file)

    def _refresh(self, crl_file: Path) -> None:
        try:
            stamp = _stamp(crl_file)
        except OSError as exc:
            if self._stamp is not None:
                log.error("crl_reload_failed", reason=f"cannot stat CRL: {exc.strerror}")
                self._stamp = None
            return
        if stamp != self._stamp:
            self._stamp = stamp
            try:
                self._install(load_crl(crl_file, self._ca_file))
                log.info("crl_loaded", revoked=len(self._revoked), number=self._number)
            except (OSError, ValueError) as exc:
                log.error(
                    "crl_reload_failed",
                    reason=str(exc),
                    keeping=len(self._revoked),
                    number=self._number,
                )
        if (
            not self._stale_logged
            and self._next_update is not None
            and self._next_update < dt.datetime.now(dt.UTC)
        ):
            # A stale CRL still lists every revocation it knew; refusing all
            # calls instead would stop the ZVH, so warn loudly and keep it.
            log.error("crl_stale", next_update=self._next_update.isoformat())
            self._stale_logged = True

    def is_revoked(self, serial: int) -> bool:
        """True if ``serial`` is on the current CRL (call :meth:`refresh` first)."""
        return serial in self._revoked


def channel_credentials(
    ca_file: Path, cert_file: Path, key_file: Path, passphrase_file: Path | None = None
) -> grpc.ChannelCredentials:
    """Client credentials presenting ``cert_file`` and trusting the federation CA.

    Fixed: use :class:`ClientCertificates` for a long-lived client that must
    follow rotations.
    """
    try:
        key = load_private_key(key_file, passphrase_file)
    except KeyFileError as exc:
        # Callers treat every unusable credential file alike, as they did unreadable ones.
        raise OSError(str(exc)) from exc
    return grpc.ssl_channel_credentials(
        root_certificates=ca_file.read_bytes(),
        private_key=private_key_pem(key),
        certificate_chain=cert_file.read_bytes(),
    )


def node_channel(
    target: str, node_id: str, credentials: grpc.ChannelCredentials
) -> grpc.aio.Channel:
    """An mTLS channel to the node ``node_id`` at ``target`` (``host:port``).

    The server must present the DNS name :func:`node_dns_name` of ``node_id``,
    which only that node's certificate carries, so a channel cannot end up at
    another federation member that happens to listen on ``target``. Every call
    carries the current W3C trace context.
    """
    return grpc.aio.secure_channel(
        target,
        credentials,
        options=[("grpc.ssl_target_name_override", node_dns_name(node_id))],
        interceptors=client_interceptors(),
    )
