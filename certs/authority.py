"""Certificate issuance for the federation PKI: root CA, leaves and CRLs.

Keys are ECDSA P-256. Leaves carry the identity profile of
:mod:`certs.identity` and are valid for both TLS client and server use,
because nodes are servers to partners and clients to each other.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from certs.identity import SCHAKEL_PROFILE_OID, Identity, PeerKind, encode_profile

CaKey = ec.EllipticCurvePrivateKey


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def new_key() -> CaKey:
    """A fresh ECDSA P-256 private key."""
    return ec.generate_private_key(ec.SECP256R1())


def create_root_ca(
    name: str,
    *,
    valid_days: int = 3650,
    key: CaKey | None = None,
    not_before: dt.datetime | None = None,
) -> tuple[CaKey, x509.Certificate]:
    """Create a self-signed federation root CA."""
    key = key or new_key()
    start = not_before or _now() - dt.timedelta(minutes=5)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + dt.timedelta(days=valid_days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ski, critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


@dataclass(frozen=True)
class Validity:
    """When an issued certificate is valid."""

    not_before: dt.datetime
    not_after: dt.datetime

    @classmethod
    def days(cls, days: int) -> Validity:
        """Valid from five minutes ago (clock skew) for ``days`` days."""
        start = _now() - dt.timedelta(minutes=5)
        return cls(start, start + dt.timedelta(days=days))


def issue(
    ca_key: CaKey,
    ca_cert: x509.Certificate,
    identity: Identity,
    *,
    validity: Validity,
    common_name: str | None = None,
    dns_names: Iterable[str] = (),
    key: CaKey | None = None,
) -> tuple[CaKey, x509.Certificate]:
    """Issue a leaf certificate carrying ``identity``.

    ``dns_names`` are added as DNS SANs for nodes, so that clients can check
    the server name as well as the identity URI.
    """
    key = key or new_key()
    cn = common_name or identity.uri
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, identity.org_id or identity.node_id),
            x509.NameAttribute(NameOID.SERIAL_NUMBER, identity.oin),
        ]
    )
    names: list[x509.GeneralName] = [x509.UniformResourceIdentifier(identity.uri)]
    names += [x509.DNSName(d) for d in dns_names]
    usages = [ExtendedKeyUsageOID.CLIENT_AUTH]
    if identity.kind is PeerKind.NODE:
        usages.append(ExtendedKeyUsageOID.SERVER_AUTH)
    aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(validity.not_before)
        .not_valid_after(validity.not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=True,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(aki, critical=False)
        .add_extension(
            x509.UnrecognizedExtension(SCHAKEL_PROFILE_OID, encode_profile(identity)),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    return key, cert


def build_crl(
    ca_key: CaKey,
    ca_cert: x509.Certificate,
    revoked: Iterable[tuple[int, dt.datetime]],
    *,
    next_update_days: int = 7,
) -> x509.CertificateRevocationList:
    """A CRL listing ``(serial, revocation time)`` pairs, signed by the CA."""
    now = _now()
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca_cert.subject)
        .last_update(now)
        .next_update(now + dt.timedelta(days=next_update_days))
    )
    for serial, when in revoked:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(when).build()
        )
    return builder.sign(ca_key, hashes.SHA256())
