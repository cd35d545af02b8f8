"""The identity profile round-trips through real certificates and rejects bad ones."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import ExtensionOID, NameOID

from certs.authority import Validity, create_root_ca, issue, new_key
from certs.identity import (
    IdentityError,
    PeerKind,
    identity_from_certificate,
    make_identity,
    subject_for,
)

OIN = "00000001823288444000"
OTHER_OIN = "00000001823288444999"
NODE = "zvh-haaglanden"

STANDARD_EXTENSIONS = {
    ExtensionOID.BASIC_CONSTRAINTS,
    ExtensionOID.KEY_USAGE,
    ExtensionOID.EXTENDED_KEY_USAGE,
    ExtensionOID.SUBJECT_ALTERNATIVE_NAME,
    ExtensionOID.SUBJECT_KEY_IDENTIFIER,
    ExtensionOID.AUTHORITY_KEY_IDENTIFIER,
}


@pytest.mark.parametrize(
    ("kind", "fields", "uri"),
    [
        (PeerKind.NODE, {"node_id": NODE}, f"schakel://node/{NODE}"),
        (
            PeerKind.PARTNER,
            {"node_id": NODE, "org_id": "politie-dh", "org_type": "politie"},
            f"schakel://partner/{NODE}/politie-dh",
        ),
        (
            PeerKind.OFFICER,
            {"node_id": NODE, "role": "procesregisseur"},
            f"schakel://officer/{NODE}/procesregisseur",
        ),
        (PeerKind.OFFICER, {"node_id": NODE, "role": "fg"}, f"schakel://officer/{NODE}/fg"),
        (PeerKind.COLLECTOR, {"org_id": "stuurgroep"}, "schakel://collector/stuurgroep"),
        (PeerKind.TRANSCRYPTOR, {"org_id": "tc-logius"}, "schakel://transcryptor/tc-logius"),
    ],
)
def test_identity_round_trips_through_a_certificate_with_standard_fields_only(
    kind: PeerKind, fields: dict[str, str], uri: str
) -> None:
    ca_key, ca_cert = create_root_ca("test federation")
    identity = make_identity(kind, oin=OIN, **fields)  # type: ignore[arg-type]
    _, cert = issue(ca_key, ca_cert, identity, validity=Validity.days(1))
    parsed = identity_from_certificate(cert)
    assert parsed == identity
    assert (parsed.uri, parsed.oin, parsed.org_type) == (uri, OIN, identity.org_type)
    # No custom extension: nothing another stack (Go, Java, Node.js) could fail to parse.
    assert {ext.oid for ext in cert.extensions} <= STANDARD_EXTENSIONS
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == [uri]
    categories = cert.subject.get_attributes_for_oid(NameOID.BUSINESS_CATEGORY)
    assert [c.value for c in categories] == (["politie"] if kind is PeerKind.PARTNER else [])


def test_officer_roles_are_distinct_identities_and_identities_compare_whole() -> None:
    regisseur = make_identity(PeerKind.OFFICER, node_id=NODE, role="procesregisseur", oin=OIN)
    fg = make_identity(PeerKind.OFFICER, node_id=NODE, role="fg", oin=OIN)
    assert regisseur != fg
    assert regisseur.uri != fg.uri
    assert (regisseur.org_id, regisseur.org_type) == (NODE, "zvh")
    assert regisseur.role == "procesregisseur"
    # The OIN is an attribute, not part of who someone is.
    assert regisseur == make_identity(
        PeerKind.OFFICER, node_id=NODE, roles={"procesregisseur"}, oin=OTHER_OIN
    )
    # The same bare id names different actors of different kinds or nodes.
    collector = make_identity(PeerKind.COLLECTOR, org_id="gemeente-dh", oin=OIN)
    partner = make_identity(
        PeerKind.PARTNER, node_id=NODE, org_id="gemeente-dh", org_type="gemeente", oin=OIN
    )
    elsewhere = make_identity(
        PeerKind.PARTNER, node_id="zvh-utrecht", org_id="gemeente-dh", org_type="gemeente", oin=OIN
    )
    assert len({collector, partner, elsewhere}) == 3


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"kind": PeerKind.NODE, "node_id": "Bad Id"}, "node id"),
        ({"kind": PeerKind.NODE, "node_id": "zvh-a", "oin": "123"}, "OIN"),
        (
            {"kind": PeerKind.PARTNER, "node_id": "zvh-a", "org_id": "x", "org_type": "bakker"},
            "org type",
        ),
        (
            {"kind": PeerKind.PARTNER, "node_id": "zvh-a", "org_id": "x", "org_type": "zvh"},
            "org type",
        ),
        (
            {"kind": PeerKind.PARTNER, "node_id": "zvh-a", "org_id": "zvh-a", "org_type": "ggz"},
            "is its node's id",
        ),
        ({"kind": PeerKind.OFFICER, "node_id": "zvh-a"}, "exactly one role"),
        (
            {"kind": PeerKind.OFFICER, "node_id": "zvh-a", "roles": {"fg", "procesregisseur"}},
            "exactly one role",
        ),
        (
            {"kind": PeerKind.OFFICER, "node_id": "zvh-a", "role": "fg", "org_id": "ggz-a"},
            "belongs to the ZVH itself",
        ),
        ({"kind": PeerKind.COLLECTOR, "org_id": "c", "role": "fg"}, "only the role 'landelijk'"),
        ({"kind": PeerKind.TRANSCRYPTOR, "org_id": "t", "node_id": "zvh-a"}, "no node id"),
        ({"kind": PeerKind.NODE, "node_id": "zvh-a", "roles": {"root"}}, "unknown role"),
    ],
)
def test_invalid_identities_are_refused_with_the_reason(
    fields: dict[str, object], message: str
) -> None:
    fields.setdefault("oin", OIN)
    with pytest.raises(IdentityError, match=message):
        make_identity(**fields)  # type: ignore[arg-type]


def _certificate(subject: x509.Name, uris: list[str]) -> x509.Certificate:
    """A CA-signed certificate with exactly these names, outside the profile's builders."""
    ca_key, ca_cert = create_root_ca("test federation")
    now = dt.datetime.now(dt.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca_cert.subject)
        .public_key(new_key().public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(u) for u in uris]),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )


def _name(*extra: x509.NameAttribute) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.SERIAL_NUMBER, OIN), *extra])


@pytest.mark.parametrize(
    ("subject", "uris", "message"),
    [
        # The officer URI of the old profile, whose role was in the custom extension.
        (_name(), [f"schakel://partner/{NODE}/{NODE}"], "businessCategory"),
        (_name(), [f"schakel://node/{NODE}", f"schakel://node/{NODE}-2"], "exactly one URI SAN"),
        (_name(), [f"schakel://officer/{NODE}/baas"], "officer role 'baas'"),
        (_name(), [f"schakel://node/{NODE}?x=1"], "not of the form"),
        (_name(), [f"schakel://kapper/{NODE}"], "names no kind"),
        (_name(), [f"https://{NODE}.example"], "not a schakel:// identity"),
        (
            _name(x509.NameAttribute(NameOID.BUSINESS_CATEGORY, "politie")),
            [f"schakel://node/{NODE}"],
            "carries no businessCategory",
        ),
        (x509.Name([]), [f"schakel://node/{NODE}"], "serialNumber"),
    ],
)
def test_certificates_outside_the_profile_are_refused(
    subject: x509.Name, uris: list[str], message: str
) -> None:
    with pytest.raises(IdentityError, match=message):
        identity_from_certificate(_certificate(subject, uris))


def test_a_long_identity_keeps_its_uri_but_a_short_common_name() -> None:
    identity = make_identity(
        PeerKind.PARTNER, node_id="n" * 40, org_id="o" * 40, org_type="ggz", oin=OIN
    )
    (cn,) = subject_for(identity).get_attributes_for_oid(NameOID.COMMON_NAME)
    assert len(str(cn.value)) <= 64
    ca_key, ca_cert = create_root_ca("test federation")
    _, cert = issue(ca_key, ca_cert, identity, validity=Validity.days(1))
    assert identity_from_certificate(cert).uri == identity.uri
