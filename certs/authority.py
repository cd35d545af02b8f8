"""Certificate issuance for the federation PKI: root CA, leaves and CRLs.

Keys are ECDSA P-256 (the CA key may live in an HSM, :mod:`certs.pkcs11`).
Leaves carry the identity profile of :mod:`certs.identity`; a node's is
valid for TLS client and server use, because nodes are servers to partners
and clients to each other.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from certs.identity import Identity, IdentityError, PeerKind, subject_for

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


def certificate_for(
    ca_key: CaKey,
    ca_cert: x509.Certificate,
    identity: Identity,
    public_key: ec.EllipticCurvePublicKey,
    *,
    validity: Validity,
    dns_names: Iterable[str] = (),
) -> x509.Certificate:
    """A leaf certificate carrying ``identity`` for ``public_key``, signed by the CA.

    Only standard extensions: the identity is the one URI SAN, the OIN the
    subject serialNumber, a partner's type the subject businessCategory.
    ``dns_names`` are added as DNS SANs for nodes and transcryptors, which
    are servers, so that clients can check the server name as well.
    """
    servers = (PeerKind.NODE, PeerKind.TRANSCRYPTOR)
    names: list[x509.GeneralName] = [x509.UniformResourceIdentifier(identity.uri)]
    if identity.kind in servers:
        names += [x509.DNSName(d) for d in dns_names]
    elif tuple(dns_names):
        raise IdentityError(f"a {identity.kind} certificate carries no DNS names")
    usages = [ExtendedKeyUsageOID.CLIENT_AUTH]
    if identity.kind in servers:
        usages.append(ExtendedKeyUsageOID.SERVER_AUTH)
    return (
        x509.CertificateBuilder()
        .subject_name(subject_for(identity))
        .issuer_name(ca_cert.subject)
        .public_key(public_key)
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
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )


def issue(
    ca_key: CaKey,
    ca_cert: x509.Certificate,
    identity: Identity,
    *,
    validity: Validity,
    dns_names: Iterable[str] = (),
    key: CaKey | None = None,
) -> tuple[CaKey, x509.Certificate]:
    """Make a key (unless given) and issue a certificate for it: the dev PKI's way.

    In production the owner makes the key and sends a signing request
    (:mod:`certs.enrol`), so no private key leaves its owner.
    """
    key = key or new_key()
    cert = certificate_for(
        ca_key, ca_cert, identity, key.public_key(), validity=validity, dns_names=dns_names
    )
    return key, cert


def build_crl(
    ca_key: CaKey,
    ca_cert: x509.Certificate,
    revoked: Iterable[tuple[int, dt.datetime]],
    *,
    next_update_days: int = 7,
    number: int | None = None,
) -> x509.CertificateRevocationList:
    """A CRL listing ``(serial, revocation time)`` pairs, signed by the CA.

    Its CRL number (RFC 5280 §5.2.3) lets a node refuse an older CRL put
    back in place of a newer one. ``number`` defaults to the signing time in
    microseconds since 1970, which increases with every CRL as long as the
    CA's clock does (the way public CAs number their CRLs).
    """
    now = _now()
    if number is None:
        number = int(now.timestamp() * 1_000_000)
    if number < 0:
        raise ValueError("a CRL number is not negative")
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca_cert.subject)
        .last_update(now)
        .next_update(now + dt.timedelta(days=next_update_days))
        .add_extension(x509.CRLNumber(number), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
    )
    for serial, when in revoked:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(when).build()
        )
    return builder.sign(ca_key, hashes.SHA256())


def crl_number(crl: x509.CertificateRevocationList) -> int | None:
    """The CRL number of ``crl``, or None when it carries none."""
    try:
        return crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    except x509.ExtensionNotFound:
        return None
