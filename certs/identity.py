"""Federation identities carried in X.509 certificates (docs/certificates.md).

An identity is read only from a certificate whose chain the TLS layer has
already verified (or from a signing request the CA is about to check);
nothing here trusts a message field. The profile uses standard fields only,
so that every X.509 stack (Go, Java, .NET, Node.js, OpenSSL) parses it:

- exactly one URI SAN names the actor, and it is the whole identity:

  ===============  ==============================================
  node             ``schakel://node/<node-id>``
  partner          ``schakel://partner/<node-id>/<org-id>``
  officer          ``schakel://officer/<node-id>/<role>``, role
                   ``procesregisseur`` or ``fg``
  collector        ``schakel://collector/<collector-id>``
  transcryptor     ``schakel://transcryptor/<transcryptor-id>``
  ===============  ==============================================

- the subject ``serialNumber`` holds the organisation's OIN (20 digits);
- a partner's organisation type (politie, ggz, ...) is the subject
  ``businessCategory`` (X.520, OID 2.5.4.15): an attribute the CA vouches
  for, not part of the identity.

Two identities are the same when kind, node, organisation and role are:
:class:`Identity` compares exactly those, never a bare id.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum

from cryptography import x509
from cryptography.x509.oid import NameOID

from policy.vocabulary import COLLECTOR_ROLE, OFFICER_ROLES, ORG_TYPES, REGIE, ROLES

URI_SCHEME = "schakel://"

PARTNER_ORG_TYPES = ORG_TYPES - {REGIE}
"""Organisation types a partner certificate may carry; the regie itself is an officer."""

NODE_ORG_TYPE = "node"
TRANSCRYPTOR_ORG_TYPE = "transcryptor"

_SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
_OIN = re.compile(r"^[0-9]{20}$")

__all__ = [
    "COLLECTOR_ROLE",
    "OFFICER_ROLES",
    "ORG_TYPES",
    "PARTNER_ORG_TYPES",
    "ROLES",
    "URI_SCHEME",
    "Identity",
    "IdentityError",
    "PeerKind",
    "check_slug",
    "identity_from_certificate",
    "identity_from_names",
    "make_identity",
    "parse_uri",
    "subject_for",
]


class IdentityError(ValueError):
    """A certificate or a requested identity does not follow the profile."""


class PeerKind(StrEnum):
    """What kind of actor a certificate identifies."""

    NODE = "node"
    PARTNER = "partner"
    OFFICER = "officer"
    COLLECTOR = "collector"
    TRANSCRYPTOR = "transcryptor"


@dataclass(frozen=True)
class Identity:
    """The verified identity of a peer, as the server sees it.

    Equality and hashing use kind, node, organisation and roles: the OIN and
    the organisation type are attributes of the identity, not part of it.
    """

    kind: PeerKind
    node_id: str
    """The node the actor belongs to; the node itself for a node; empty for a
    collector or transcryptor."""
    org_id: str
    """Organisation id (pseudonymisation domain): the node id for an officer,
    the collector's or transcryptor's id for those, empty for a node."""
    org_type: str = field(compare=False)
    roles: frozenset[str]
    """The officer's one role, ``landelijk`` for the collector, else empty."""
    oin: str = field(compare=False)

    @property
    def role(self) -> str:
        """The single role of an officer or collector ("" for other kinds)."""
        return next(iter(sorted(self.roles)), "")

    @property
    def uri(self) -> str:
        """The URI SAN that names this identity."""
        match self.kind:
            case PeerKind.NODE:
                return f"{URI_SCHEME}node/{self.node_id}"
            case PeerKind.PARTNER:
                return f"{URI_SCHEME}partner/{self.node_id}/{self.org_id}"
            case PeerKind.OFFICER:
                return f"{URI_SCHEME}officer/{self.node_id}/{self.role}"
            case PeerKind.COLLECTOR:
                return f"{URI_SCHEME}collector/{self.org_id}"
        return f"{URI_SCHEME}transcryptor/{self.org_id}"


def check_slug(value: str, what: str) -> str:
    """Return ``value`` if it is a valid node, organisation or collector id."""
    if not _SLUG.match(value):
        raise IdentityError(
            f"{what} {value!r} must be 1-63 lowercase letters, digits or '-', "
            "starting with a letter or digit"
        )
    return value


def _no(value: str | frozenset[str], what: str, kind: PeerKind) -> None:
    if value:
        raise IdentityError(f"a {kind} certificate carries no {what}")


def make_identity(
    kind: PeerKind,
    *,
    node_id: str = "",
    org_id: str = "",
    org_type: str = "",
    roles: frozenset[str] | set[str] = frozenset(),
    role: str = "",
    oin: str,
) -> Identity:
    """Build and validate an identity (used when issuing and when parsing).

    An officer has exactly one role (``role`` or a one-element ``roles``);
    its organisation is the ZVH itself, so ``org_id`` may be left empty or
    be the node id, and ``org_type`` empty or ``zvh``. A collector's role
    ``landelijk`` is implied by its kind.
    """
    roles = frozenset(roles) | ({role} if role else frozenset())
    if not _OIN.match(oin):
        raise IdentityError(f"OIN {oin!r} must be 20 digits")
    unknown = roles - ROLES
    if unknown:
        raise IdentityError(f"unknown role(s) {sorted(unknown)}; known: {sorted(ROLES)}")
    if kind in (PeerKind.COLLECTOR, PeerKind.TRANSCRYPTOR):
        check_slug(org_id, f"{kind} id")
        _no(node_id, "node id", kind)
        if kind is PeerKind.TRANSCRYPTOR:
            _no(roles, "roles", kind)
            return Identity(kind, "", org_id, TRANSCRYPTOR_ORG_TYPE, roles, oin)
        if roles - {COLLECTOR_ROLE}:
            raise IdentityError(f"a collector certificate carries only the role {COLLECTOR_ROLE!r}")
        return Identity(kind, "", org_id, COLLECTOR_ROLE, frozenset({COLLECTOR_ROLE}), oin)
    check_slug(node_id, "node id")
    if COLLECTOR_ROLE in roles:
        raise IdentityError(f"only a collector certificate may carry the role {COLLECTOR_ROLE!r}")
    if kind is PeerKind.NODE:
        _no(roles, "roles", kind)
        _no(org_id, "organisation id", kind)
        if org_type not in ("", NODE_ORG_TYPE):
            raise IdentityError("a node certificate carries no organisation type")
        return Identity(kind, node_id, "", NODE_ORG_TYPE, roles, oin)
    if kind is PeerKind.OFFICER:
        if len(roles & OFFICER_ROLES) != 1:
            raise IdentityError(
                "an officer certificate needs exactly one role, 'procesregisseur' or 'fg': "
                "each role is an identity of its own"
            )
        if org_id not in ("", node_id) or org_type not in ("", REGIE):
            raise IdentityError(
                f"an officer belongs to the ZVH itself: organisation {node_id!r}, type {REGIE!r}"
            )
        return Identity(kind, node_id, node_id, REGIE, roles, oin)
    _no(roles, "roles; issue an officer certificate", kind)
    check_slug(org_id, "organisation id")
    if org_type not in PARTNER_ORG_TYPES:
        raise IdentityError(
            f"unknown partner org type {org_type!r}; known: {sorted(PARTNER_ORG_TYPES)}"
        )
    if org_id == node_id:
        raise IdentityError(
            f"organisation id {org_id!r} is its node's id; node and organisation ids "
            "share one namespace (they are pseudonymisation domains)"
        )
    return Identity(kind, node_id, org_id, org_type, roles, oin)


def transcryptor_dns_name(transcryptor_id: str) -> str:
    """The DNS SAN every transcryptor certificate carries, which its callers pin with its id."""
    return f"{transcryptor_id}.transcryptor.schakel.invalid"


def parse_uri(uri: str) -> tuple[PeerKind, list[str]]:
    """Split a ``schakel://`` identity URI into its kind and path segments.

    Only the exact profile forms are accepted: no port, query, fragment,
    user info, empty segment or percent-encoding.
    """
    if not uri.startswith(URI_SCHEME):
        raise IdentityError(f"URI SAN {uri!r} is not a {URI_SCHEME} identity")
    kind_text, _, rest = uri[len(URI_SCHEME) :].partition("/")
    try:
        kind = PeerKind(kind_text)
    except ValueError as exc:
        raise IdentityError(
            f"URI SAN {uri!r} names no kind of {', '.join(k.value for k in PeerKind)}"
        ) from exc
    parts = rest.split("/")
    wanted = {PeerKind.PARTNER: 2, PeerKind.OFFICER: 2}.get(kind, 1)
    if len(parts) != wanted or not all(_SLUG.match(p) for p in parts):
        raise IdentityError(f"URI SAN {uri!r} is not of the form of a {kind} identity")
    return kind, parts


def identity_from_names(
    subject: x509.Name, san: x509.SubjectAlternativeName | None, what: str = "certificate"
) -> Identity:
    """The identity a subject and SAN carry; ``what`` (certificate, request) names the source."""
    if san is None:
        raise IdentityError(f"{what} has no subject alternative name")
    uris = san.get_values_for_type(x509.UniformResourceIdentifier)
    if len(uris) != 1:
        raise IdentityError(
            f"{what} must carry exactly one URI SAN (a {URI_SCHEME} URI), not {len(uris)}"
        )
    kind, parts = parse_uri(uris[0])
    serials = subject.get_attributes_for_oid(NameOID.SERIAL_NUMBER)
    if len(serials) != 1:
        raise IdentityError("the subject must carry one serialNumber (the OIN)")
    oin = str(serials[0].value)
    categories = subject.get_attributes_for_oid(NameOID.BUSINESS_CATEGORY)
    if kind is not PeerKind.PARTNER and categories:
        raise IdentityError(f"a {kind} carries no businessCategory (organisation type)")
    match kind, parts:
        case PeerKind.NODE, [node_id]:
            return make_identity(kind, node_id=node_id, oin=oin)
        case PeerKind.PARTNER, [node_id, org_id]:
            if len(categories) != 1:
                raise IdentityError("a partner needs one subject businessCategory (org type)")
            org_type = str(categories[0].value)
            return make_identity(kind, node_id=node_id, org_id=org_id, org_type=org_type, oin=oin)
        case PeerKind.OFFICER, [node_id, role]:
            if role not in OFFICER_ROLES:
                raise IdentityError(f"officer role {role!r} is not one of {sorted(OFFICER_ROLES)}")
            return make_identity(kind, node_id=node_id, role=role, oin=oin)
    return make_identity(kind, org_id=parts[0], oin=oin)


def identity_from_certificate(cert: x509.Certificate) -> Identity:
    """Read the identity of a certificate that the TLS layer has verified.

    Raises IdentityError with a message that says what is missing.
    """
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        san = None
    return identity_from_names(cert.subject, san)


def subject_for(identity: Identity) -> x509.Name:
    """The subject name the profile gives ``identity``."""
    # X.520 caps a common name at 64 characters; the URI SAN is the identity anyway.
    common_name = identity.uri if len(identity.uri) <= 64 else identity.org_id or identity.node_id
    attributes = [
        x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, identity.org_id or identity.node_id),
        x509.NameAttribute(NameOID.SERIAL_NUMBER, identity.oin),
    ]
    if identity.kind is PeerKind.PARTNER:
        attributes.append(x509.NameAttribute(NameOID.BUSINESS_CATEGORY, identity.org_type))
    return x509.Name(attributes)
