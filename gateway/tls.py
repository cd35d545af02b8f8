"""TLS material for the node: server credentials that rotate, client credentials, the CRL.

gRPC Python can neither reload a server certificate by itself nor check a
CRL, so this module does both: :class:`ServerCertificates` is the fetcher
gRPC calls before every handshake (it re-reads the files only when they
change), and :class:`RevocationList` is consulted by the interceptor on
every call, re-reading the CRL file when its mtime changes.
"""

from __future__ import annotations

import datetime as dt
import os
import threading
from dataclasses import dataclass
from pathlib import Path

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from certs.ca_store import node_dns_name
from gateway.logging import get_logger
from gateway.tracing import client_interceptors

log = get_logger("tls")

_Stamp = tuple[tuple[int, int, int], ...]


def _stamp(*paths: Path) -> _Stamp:
    """What identifies a version of the files: inode, size and mtime of each."""
    stamps = []
    for path in paths:
        st = os.stat(path)
        stamps.append((st.st_ino, st.st_size, st.st_mtime_ns))
    return tuple(stamps)


@dataclass(frozen=True)
class _Material:
    ca_pem: bytes
    cert_pem: bytes
    key_pem: bytes
    not_after: dt.datetime


class TlsFileError(ValueError):
    """A TLS file is unusable; ``key`` names its config key (``ca_file``, ``cert_file``...)."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


def _read(key: str, path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise TlsFileError(key, f"cannot read {path}: {exc.strerror}") from exc


def _read_material(ca_file: Path, cert_file: Path, key_file: Path) -> _Material:
    """Read and cross-check CA, certificate and key; TlsFileError says which file is wrong."""
    ca_pem = _read("ca_file", ca_file)
    cert_pem = _read("cert_file", cert_file)
    key_pem = _read("key_file", key_file)
    try:
        x509.load_pem_x509_certificates(ca_pem)
    except ValueError as exc:
        raise TlsFileError("ca_file", f"{ca_file} holds no PEM certificate") from exc
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
    except ValueError as exc:
        raise TlsFileError("cert_file", f"{cert_file} holds no PEM certificate") from exc
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError) as exc:
        raise TlsFileError("key_file", f"{key_file} holds no unencrypted PEM key") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.public_key() != cert.public_key():
        raise TlsFileError("key_file", f"{key_file} does not belong to {cert_file}")
    return _Material(ca_pem, cert_pem, key_pem, cert.not_valid_after_utc)


class ServerCertificates:
    """The node's server certificate, key and client CA, reloaded when the files change.

    Call :meth:`credentials` once; gRPC then calls the instance before every
    handshake. A half-written or mismatched rotation is logged and ignored:
    the node keeps serving with the last good material.
    """

    def __init__(self, ca_file: Path, cert_file: Path, key_file: Path) -> None:
        self._paths = (ca_file, cert_file, key_file)
        self._lock = threading.Lock()
        self._stamp = _stamp(*self._paths)
        self._material = _read_material(*self._paths)
        self.generation = 0
        """Incremented on every accepted rotation."""

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
            try:
                stamp = _stamp(*self._paths)
            except OSError as exc:
                log.error("tls_reload_failed", reason=f"cannot stat: {exc.strerror}")
                return None
            if stamp == self._stamp:
                return None
            self._stamp = stamp
            try:
                self._material = _read_material(*self._paths)
            except TlsFileError as exc:
                log.error("tls_reload_failed", key=f"tls.{exc.key}", reason=str(exc))
                return None
            self.generation += 1
            log.info(
                "tls_rotated",
                generation=self.generation,
                not_after=self._material.not_after.isoformat(),
            )
            return self._config()


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

    Only a CRL whose signature verifies against the CA replaces the current
    one; a bad file is logged and the last good list stays in force. With
    no CRL file configured nothing is revoked.
    """

    def __init__(self, crl_file: Path | None, ca_file: Path) -> None:
        self._crl_file = crl_file
        self._ca_file = ca_file
        self._stamp: _Stamp | None = None
        self._revoked: frozenset[int] = frozenset()
        self._next_update: dt.datetime | None = None
        self._stale_logged = False
        if crl_file is not None:
            self._stamp = _stamp(crl_file)
            self._install(load_crl(crl_file, ca_file))

    def _install(self, crl: x509.CertificateRevocationList) -> None:
        self._revoked = frozenset(entry.serial_number for entry in crl)
        self._next_update = crl.next_update_utc
        self._stale_logged = False

    def refresh(self) -> None:
        """Re-read the CRL if its file changed since the last look."""
        if self._crl_file is None:
            return
        try:
            stamp = _stamp(self._crl_file)
        except OSError as exc:
            if self._stamp is not None:
                log.error("crl_reload_failed", reason=f"cannot stat CRL: {exc.strerror}")
                self._stamp = None
            return
        if stamp != self._stamp:
            self._stamp = stamp
            try:
                self._install(load_crl(self._crl_file, self._ca_file))
                log.info("crl_loaded", revoked=len(self._revoked))
            except (OSError, ValueError) as exc:
                log.error("crl_reload_failed", reason=str(exc), keeping=len(self._revoked))
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


def channel_credentials(ca_file: Path, cert_file: Path, key_file: Path) -> grpc.ChannelCredentials:
    """Client credentials presenting ``cert_file`` and trusting the federation CA."""
    return grpc.ssl_channel_credentials(
        root_certificates=ca_file.read_bytes(),
        private_key=key_file.read_bytes(),
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
