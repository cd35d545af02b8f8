"""The access table, rule by rule, and certificates the interceptor cannot use."""

from __future__ import annotations

import asyncio
import datetime as dt

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from grpc_health.v1 import health_pb2, health_pb2_grpc

from certs.authority import Validity, new_key
from certs.ca_store import write_certificate, write_private_key
from certs.identity import Identity, PeerKind, make_identity
from gateway.rpc.auth import authorize
from tests.support.pki import HL, OIN, RR, Credential, Federation, StartNode, channel_to

PARTNER = make_identity(PeerKind.PARTNER, node_id=RR, org_id="ggz-rr", org_type="ggz", oin=OIN)
FOREIGN_PARTNER = make_identity(
    PeerKind.PARTNER, node_id=HL, org_id="ggz-hl", org_type="ggz", oin=OIN
)
NODE = make_identity(PeerKind.NODE, node_id=HL, oin=OIN)
PR = make_identity(
    PeerKind.OFFICER, node_id=RR, org_id=RR, org_type="zvh", roles={"procesregisseur"}, oin=OIN
)
FG = make_identity(PeerKind.OFFICER, node_id=RR, org_id=RR, org_type="zvh", roles={"fg"}, oin=OIN)
FOREIGN_FG = make_identity(
    PeerKind.OFFICER, node_id=HL, org_id=HL, org_type="zvh", roles={"fg"}, oin=OIN
)
COLLECTOR = make_identity(PeerKind.COLLECTOR, org_id="stuurgroep", roles={"landelijk"}, oin=OIN)
EVERYONE = (PARTNER, FOREIGN_PARTNER, NODE, PR, FG, FOREIGN_FG, COLLECTOR)

ALLOWED = {
    "/schakel.v1.PartnerService/SubmitReferral": {PARTNER},
    "/schakel.v1.FederationService/HitNoHit": {NODE},
    "/schakel.v1.FederationService/AddCheckpoint": {NODE},
    "/schakel.v1.FederationService/GetSignals": {COLLECTOR},
    "/schakel.v1.CaseService/Triage": {PR},
    "/schakel.v1.AuditService/VerifyLog": {PR, FG},
    "/grpc.health.v1.Health/Check": set(EVERYONE),
    "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo": set(EVERYONE),
    "/schakel.v1.SomethingNew/Do": set(),
}


@pytest.mark.parametrize("method", sorted(ALLOWED))
@pytest.mark.parametrize("identity", EVERYONE, ids=lambda i: f"{i.kind}:{i.uri}:{sorted(i.roles)}")
def test_access_table(method: str, identity: Identity) -> None:
    reason = authorize(identity, method, RR)
    if identity in ALLOWED[method]:
        assert reason is None
    else:
        assert reason


def test_an_unknown_service_is_denied_by_default() -> None:
    assert authorize(NODE, "/schakel.v1.SomethingNew/Do", RR) == (
        "no access rule covers schakel.v1.SomethingNew; denied by default"
    )


def _plain_certificate(fed: Federation, validity: Validity) -> Credential:
    """A certificate from the federation CA without the Schakel identity profile."""
    key = new_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "someone")]))
        .issuer_name(fed.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(validity.not_before)
        .not_valid_after(validity.not_after)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(fed.key, hashes.SHA256())
    )
    write_private_key(fed.root / "plain.key", key)
    write_certificate(fed.root / "plain.pem", cert)
    return Credential(PARTNER, cert, fed.root / "plain.pem", fed.root / "plain.key")


async def test_a_ca_certificate_without_an_identity_is_unauthenticated(
    federation: Federation, start_node: StartNode
) -> None:
    node = await start_node(federation.config(federation.node(RR)))
    plain = _plain_certificate(federation, Validity.days(1))
    async with channel_to(node, plain, federation.ca_file) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=5
            )
    assert err.value.code() is grpc.StatusCode.UNAUTHENTICATED
    assert "not a Schakel identity: certificate has no subject alternative name" in (
        err.value.details() or ""
    )


async def test_a_certificate_expiring_during_a_connection_is_refused_on_the_next_call(
    federation: Federation, start_node: StartNode
) -> None:
    node = await start_node(federation.config(federation.node(RR)))
    start = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
    short = federation.partner(
        RR,
        "politie-rr",
        "politie",
        validity=Validity(start, dt.datetime.now(dt.UTC) + dt.timedelta(seconds=2)),
    )
    async with channel_to(node, short, federation.ca_file) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        await stub.Check(health_pb2.HealthCheckRequest(), timeout=5)
        await asyncio.sleep(2.5)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.Check(health_pb2.HealthCheckRequest(), timeout=5)
    assert err.value.code() is grpc.StatusCode.UNAUTHENTICATED
    assert "expired at" in (err.value.details() or "")
