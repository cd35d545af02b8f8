"""Enrolment by signing request: the owner makes its key, the CA sees only a CSR.

``schakel certs request`` (at the node, partner, officer, collector or
transcryptor) writes a fresh key, encrypted when a passphrase file is given,
and a PKCS#10 request carrying the identity of the profile
(:mod:`certs.identity`): the URI SAN, the OIN as subject serialNumber and,
for a partner, its type as businessCategory. ``schakel certs sign`` (at the
CA) checks the request's signature and the identity it asks for against the
profile, and issues a certificate with the CA's own extensions; nothing else
in the request is copied.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from certs.identity import Identity, IdentityError, PeerKind, identity_from_names, subject_for

SERVER_KINDS = (PeerKind.NODE, PeerKind.TRANSCRYPTOR)
"""Kinds whose certificates may carry DNS names: the ones that serve."""


class RequestError(ValueError):
    """A signing request is unusable; the message says why."""


def make_request(
    identity: Identity, key: ec.EllipticCurvePrivateKey, dns_names: Iterable[str] = ()
) -> x509.CertificateSigningRequest:
    """A CSR asking for ``identity`` (and, for a server, ``dns_names``), signed by ``key``."""
    names: list[x509.GeneralName] = [x509.UniformResourceIdentifier(identity.uri)]
    dns = list(dns_names)
    if dns and identity.kind not in SERVER_KINDS:
        raise IdentityError(f"a {identity.kind} certificate carries no DNS names")
    names += [x509.DNSName(d) for d in dns]
    return (
        x509.CertificateSigningRequestBuilder()
        .subject_name(subject_for(identity))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .sign(key, hashes.SHA256())
    )


@dataclass(frozen=True)
class Request:
    """A checked signing request: who it asks to be, with which key and names."""

    identity: Identity
    public_key: ec.EllipticCurvePublicKey
    dns_names: tuple[str, ...]

    @property
    def key_fingerprint(self) -> str:
        """SHA-256 of the public key (SubjectPublicKeyInfo DER), to confirm out of band."""
        return public_key_fingerprint(self.public_key)


def public_key_fingerprint(key: ec.EllipticCurvePublicKey) -> str:
    """SHA-256 of ``key``'s SubjectPublicKeyInfo as colon-separated hex pairs."""
    der = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    digest = hashlib.sha256(der).hexdigest()
    return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))


def load_request(data: bytes) -> x509.CertificateSigningRequest:
    """Parse a PEM or DER CSR."""
    try:
        if data.lstrip().startswith(b"-----"):
            return x509.load_pem_x509_csr(data)
        return x509.load_der_x509_csr(data)
    except ValueError as exc:
        raise RequestError("not a PEM or DER certificate signing request") from exc


def check_request(csr: x509.CertificateSigningRequest) -> Request:
    """The identity, key and DNS names ``csr`` asks for, checked against the profile.

    Refuses a request whose signature does not verify (the requester must
    hold the key), whose key is not ECDSA P-256, or whose identity is not
    one the profile allows.
    """
    if not csr.is_signature_valid:
        raise RequestError("the request's signature does not verify with its own key")
    key = csr.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise RequestError("the request's key must be ECDSA P-256, like every Schakel key")
    try:
        san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        san = None
    try:
        identity = identity_from_names(csr.subject, san, "request")
    except IdentityError as exc:
        raise RequestError(f"the requested identity does not follow the profile: {exc}") from exc
    assert san is not None  # identity_from_names refused a request without one
    dns = tuple(san.get_values_for_type(x509.DNSName))
    if dns and identity.kind not in SERVER_KINDS:
        raise RequestError(f"a {identity.kind} certificate carries no DNS names")
    return Request(identity, key, dns)
