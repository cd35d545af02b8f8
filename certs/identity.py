"""Federation identities carried in X.509 certificates (DESIGN.md §2).

An identity is read only from a certificate whose chain the TLS layer has
already verified; nothing here trusts a message field. The encoding:

- a URI SAN names the actor: ``schakel://node/<node-id>``,
  ``schakel://partner/<node-id>/<org-id>`` (partners and officers) or
  ``schakel://collector/<collector-id>``;
- the subject ``serialNumber`` holds the organisation's OIN (20 digits);
- a non-critical extension ``SCHAKEL_PROFILE_OID`` holds a DER UTF8String
  ``org-type=<type>;roles=<role>,<role>``, so that any TLS stack can read it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from cryptography import x509
from cryptography.x509.oid import NameOID

# A UUID-derived OID (ITU-T X.667 arc 2.25): Schakel has no registered arc,
# and 2.25 lets anyone mint a collision-free one without registration.
SCHAKEL_PROFILE_OID = x509.ObjectIdentifier("2.25.253177937526455208493457413862447117893")

URI_SCHEME = "schakel://"

from policy.vocabulary import (  # noqa: E402 - re-exported for the profile's users
    COLLECTOR_ROLE,
    OFFICER_ROLES,
    ORG_TYPES,
    ROLES,
)

_SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
_OIN = re.compile(r"^[0-9]{20}$")


class IdentityError(ValueError):
    """A certificate or a requested identity does not follow the profile."""


class PeerKind(StrEnum):
    """What kind of actor a certificate identifies."""

    NODE = "node"
    PARTNER = "partner"
    OFFICER = "officer"
    COLLECTOR = "collector"


@dataclass(frozen=True)
class Identity:
    """The verified identity of a peer, as the server sees it."""

    kind: PeerKind
    node_id: str
    """The node the actor belongs to; the node itself for a node; empty for a collector."""
    org_id: str
    """Organisation id (pseudonymisation domain); the collector id for a collector."""
    org_type: str
    roles: frozenset[str]
    oin: str

    @property
    def uri(self) -> str:
        """The URI SAN that names this identity."""
        if self.kind is PeerKind.NODE:
            return f"{URI_SCHEME}node/{self.node_id}"
        if self.kind is PeerKind.COLLECTOR:
            return f"{URI_SCHEME}collector/{self.org_id}"
        return f"{URI_SCHEME}partner/{self.node_id}/{self.org_id}"

    def profile_text(self) -> str:
        """The text stored in the profile extension."""
        return f"org-type={self.org_type};roles={','.join(sorted(self.roles))}"


def check_slug(value: str, what: str) -> str:
    """Return ``value`` if it is a valid node, organisation or collector id."""
    if not _SLUG.match(value):
        raise IdentityError(
            f"{what} {value!r} must be 1-63 lowercase letters, digits or '-', "
            "starting with a letter or digit"
        )
    return value


def make_identity(
    kind: PeerKind,
    *,
    node_id: str = "",
    org_id: str = "",
    org_type: str = "",
    roles: frozenset[str] | set[str] = frozenset(),
    oin: str,
) -> Identity:
    """Build and validate an identity (used when issuing and when parsing)."""
    roles = frozenset(roles)
    if not _OIN.match(oin):
        raise IdentityError(f"OIN {oin!r} must be 20 digits")
    unknown = roles - ROLES
    if unknown:
        raise IdentityError(f"unknown role(s) {sorted(unknown)}; known: {sorted(ROLES)}")
    if kind is PeerKind.COLLECTOR:
        check_slug(org_id, "collector id")
        if COLLECTOR_ROLE not in roles:
            raise IdentityError("a collector certificate needs the role 'landelijk'")
        return Identity(kind, "", org_id, org_type or "landelijk", roles, oin)
    check_slug(node_id, "node id")
    if COLLECTOR_ROLE in roles:
        raise IdentityError("only a collector certificate may carry the role 'landelijk'")
    if kind is PeerKind.NODE:
        if roles:
            raise IdentityError("a node certificate carries no roles")
        return Identity(kind, node_id, "", "node", roles, oin)
    check_slug(org_id, "organisation id")
    if org_type not in ORG_TYPES:
        raise IdentityError(f"unknown org type {org_type!r}; known: {sorted(ORG_TYPES)}")
    if kind is PeerKind.OFFICER and not roles & OFFICER_ROLES:
        raise IdentityError("an officer certificate needs the role 'procesregisseur' or 'fg'")
    if kind is PeerKind.PARTNER and roles:
        raise IdentityError("a partner certificate carries no roles; issue an officer one")
    return Identity(kind, node_id, org_id, org_type, roles, oin)


def encode_profile(identity: Identity) -> bytes:
    """DER UTF8String of the profile text, the extension's value."""
    raw = identity.profile_text().encode()
    if len(raw) >= 128:
        raise IdentityError("profile text too long")
    return bytes([0x0C, len(raw)]) + raw


def _decode_profile(der: bytes) -> tuple[str, frozenset[str]]:
    if len(der) < 2 or der[0] != 0x0C or der[1] != len(der) - 2:
        raise IdentityError("profile extension is not a short DER UTF8String")
    fields: dict[str, str] = {}
    for part in der[2:].decode().split(";"):
        key, sep, value = part.partition("=")
        if not sep:
            raise IdentityError(f"profile field {part!r} has no '='")
        fields[key] = value
    roles = frozenset(r for r in fields.get("roles", "").split(",") if r)
    return fields.get("org-type", ""), roles


def identity_from_certificate(cert: x509.Certificate) -> Identity:
    """Read the identity of a certificate that the TLS layer has verified.

    Raises IdentityError with a message that says what is missing.
    """
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound as exc:
        raise IdentityError("certificate has no subject alternative name") from exc
    uris = [
        u
        for u in san.get_values_for_type(x509.UniformResourceIdentifier)
        if u.startswith(URI_SCHEME)
    ]
    if len(uris) != 1:
        raise IdentityError(f"certificate must carry exactly one {URI_SCHEME} URI SAN")
    serials = cert.subject.get_attributes_for_oid(NameOID.SERIAL_NUMBER)
    if len(serials) != 1:
        raise IdentityError("certificate subject must carry one serialNumber (the OIN)")
    oin = str(serials[0].value)
    try:
        ext = cert.extensions.get_extension_for_oid(SCHAKEL_PROFILE_OID).value
    except x509.ExtensionNotFound as exc:
        raise IdentityError("certificate has no Schakel profile extension") from exc
    if not isinstance(ext, x509.UnrecognizedExtension):
        raise IdentityError("Schakel profile extension has an unexpected form")
    org_type, roles = _decode_profile(ext.value)
    parts = uris[0][len(URI_SCHEME) :].split("/")
    match parts:
        case ["node", node_id]:
            return make_identity(PeerKind.NODE, node_id=node_id, roles=roles, oin=oin)
        case ["collector", collector_id]:
            return make_identity(
                PeerKind.COLLECTOR, org_id=collector_id, org_type=org_type, roles=roles, oin=oin
            )
        case ["partner", node_id, org_id]:
            kind = PeerKind.OFFICER if roles & OFFICER_ROLES else PeerKind.PARTNER
            return make_identity(
                kind, node_id=node_id, org_id=org_id, org_type=org_type, roles=roles, oin=oin
            )
    raise IdentityError(f"URI SAN {uris[0]!r} does not name a node, partner or collector")
