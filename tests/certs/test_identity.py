"""The identity profile round-trips through real certificates and rejects bad ones."""

from __future__ import annotations

import pytest

from certs.authority import Validity, create_root_ca, issue
from certs.identity import IdentityError, PeerKind, identity_from_certificate, make_identity

OIN = "00000001823288444000"


@pytest.mark.parametrize(
    ("kind", "fields", "uri"),
    [
        (PeerKind.NODE, {"node_id": "zvh-haaglanden"}, "schakel://node/zvh-haaglanden"),
        (
            PeerKind.PARTNER,
            {"node_id": "zvh-haaglanden", "org_id": "politie-dh", "org_type": "politie"},
            "schakel://partner/zvh-haaglanden/politie-dh",
        ),
        (
            PeerKind.OFFICER,
            {
                "node_id": "zvh-haaglanden",
                "org_id": "zvh-haaglanden",
                "org_type": "zvh",
                "roles": {"procesregisseur"},
            },
            "schakel://partner/zvh-haaglanden/zvh-haaglanden",
        ),
        (
            PeerKind.COLLECTOR,
            {"org_id": "stuurgroep", "roles": {"landelijk"}},
            "schakel://collector/stuurgroep",
        ),
    ],
)
def test_identity_round_trips_through_a_certificate(
    kind: PeerKind, fields: dict[str, object], uri: str
) -> None:
    ca_key, ca_cert = create_root_ca("test federation")
    identity = make_identity(kind, oin=OIN, **fields)  # type: ignore[arg-type]
    _, cert = issue(ca_key, ca_cert, identity, validity=Validity.days(1))
    parsed = identity_from_certificate(cert)
    assert parsed == identity
    assert parsed.uri == uri


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
            {"kind": PeerKind.OFFICER, "node_id": "zvh-a", "org_id": "x", "org_type": "zvh"},
            "procesregisseur",
        ),
        ({"kind": PeerKind.COLLECTOR, "org_id": "c"}, "landelijk"),
        ({"kind": PeerKind.NODE, "node_id": "zvh-a", "roles": {"root"}}, "unknown role"),
    ],
)
def test_invalid_identities_are_refused_with_the_reason(
    fields: dict[str, object], message: str
) -> None:
    fields.setdefault("oin", OIN)
    with pytest.raises(IdentityError, match=message):
        make_identity(**fields)  # type: ignore[arg-type]
