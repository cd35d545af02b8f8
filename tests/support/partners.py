"""Fixtures for the adapter tests: a test PKI, federation keys and a simulated node."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass

import grpc
import grpc.aio
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from schakel.v1 import common_pb2, partner_pb2_grpc

from adapters.index import Pseudonymiser
from adapters.sdk import PartnerClient, RetryPolicy, decrypt_subject
from certs.authority import Validity, create_root_ca, issue
from certs.identity import PeerKind, make_identity
from policy.pseudonyms import (
    Ciphertext,
    DomainKey,
    FederationKeys,
    encrypt,
    subject_point,
)
from tests.support.simnode import NODE_ID, SimulatedNode

POLICE = "politie-rotterdam"
OIN = "00000001823288444000"


def pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def pem_cert(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


@dataclass(frozen=True)
class Pki:
    """PEM material of a test federation: CA, node and partner certificates."""

    ca: bytes
    node_cert: bytes
    node_key: bytes
    partner_cert: bytes
    partner_key: bytes
    foreign_cert: bytes
    foreign_key: bytes


@pytest.fixture(scope="session")
def pki() -> Pki:
    """The session's test PKI."""
    return make_pki()


def make_pki() -> Pki:
    """A CA, a node cert for localhost, a partner of that node and a partner of another node."""
    ca_key, ca_cert = create_root_ca("Schakel test federation CA")
    validity = Validity.days(1)
    node_key, node_cert = issue(
        ca_key,
        ca_cert,
        make_identity(PeerKind.NODE, node_id=NODE_ID, oin=OIN),
        validity=validity,
        dns_names=["localhost"],
    )
    partner_key, partner_cert = issue(
        ca_key,
        ca_cert,
        make_identity(
            PeerKind.PARTNER, node_id=NODE_ID, org_id=POLICE, org_type="politie", oin=OIN
        ),
        validity=validity,
    )
    foreign_key, foreign_cert = issue(
        ca_key,
        ca_cert,
        make_identity(
            PeerKind.PARTNER, node_id="zvh-utrecht", org_id="ggz-utrecht", org_type="ggz", oin=OIN
        ),
        validity=validity,
    )
    return Pki(
        ca=pem_cert(ca_cert),
        node_cert=pem_cert(node_cert),
        node_key=pem_key(node_key),
        partner_cert=pem_cert(partner_cert),
        partner_key=pem_key(partner_key),
        foreign_cert=pem_cert(foreign_cert),
        foreign_key=pem_key(foreign_key),
    )


@pytest.fixture(scope="session")
def federation() -> FederationKeys:
    """Fresh federation keys (y, Y, PS, RS) for the session."""
    return FederationKeys.generate()


@pytest.fixture(scope="session")
def police_keys(federation: FederationKeys) -> DomainKey:
    """The police organisation's domain key material, as enrolment hands it out."""
    return federation.domain_key_material(POLICE)


@dataclass
class RunningNode:
    """A simulated node serving on loopback."""

    node: SimulatedNode
    server: grpc.aio.Server
    target: str


async def start_node(pki: Pki, federation: FederationKeys, port: int = 0) -> RunningNode:
    """Start a simulated node on 127.0.0.1 (``port`` 0: any free port)."""
    server = grpc.aio.server()
    node = SimulatedNode(federation)
    partner_pb2_grpc.add_PartnerServiceServicer_to_server(node, server)
    credentials = grpc.ssl_server_credentials(
        [(pki.node_key, pki.node_cert)], root_certificates=pki.ca, require_client_auth=True
    )
    bound = server.add_secure_port(f"127.0.0.1:{port}", credentials)
    await server.start()
    return RunningNode(node, server, f"127.0.0.1:{bound}")


@pytest.fixture
async def sim(pki: Pki, federation: FederationKeys) -> AsyncIterator[RunningNode]:
    """A running simulated node, stopped after the test."""
    running = await start_node(pki, federation)
    try:
        yield running
    finally:
        await running.server.stop(grace=None)


FAST_RETRY = RetryPolicy(max_attempts=5, initial_backoff=0.01, max_backoff=0.05)


def partner_client(
    pki: Pki, target: str, *, foreign: bool = False, **kwargs: object
) -> PartnerClient:
    """An SDK client with the police partner's (or the foreign partner's) certificate."""
    return PartnerClient.connect(
        target,
        certificate_chain=pki.foreign_cert if foreign else pki.partner_cert,
        private_key=pki.foreign_key if foreign else pki.partner_key,
        root_certificates=pki.ca,
        server_name="localhost",
        retry=kwargs.pop("retry", FAST_RETRY),  # type: ignore[arg-type]
        **kwargs,  # type: ignore[arg-type]
    )


@pytest.fixture
async def client(pki: Pki, sim: RunningNode) -> AsyncIterator[PartnerClient]:
    """The police partner's client connected to the simulated node."""
    async with partner_client(pki, sim.target) as c:
        yield c


def local_pseudonymiser(federation: FederationKeys, org: str) -> Pseudonymiser:
    """Transcrypts in-process like the node's Pseudonymise, for tests that need no gRPC."""
    transcryptor = federation.transcryptor_keys().transcryptor()

    async def pseudonymise(
        batch: Sequence[common_pb2.EncryptedPseudonym],
    ) -> list[common_pb2.EncryptedPseudonym]:
        return [transcryptor.transcrypt(Ciphertext.from_proto(m), org).to_proto() for m in batch]

    return pseudonymise


def pseudonym_of(federation: FederationKeys, org: str, bsn: str) -> str:
    """The domain pseudonym (hex) ``org`` has for ``bsn``, computed the long way round."""
    transcryptor = federation.transcryptor_keys().transcryptor()
    fresh = encrypt(subject_point("bsn", bsn), federation.global_public_key)
    return decrypt_subject(
        transcryptor.transcrypt(fresh, org).to_proto(), federation.domain_key(org)
    )


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """Wait until ``condition`` holds; fail the test when it does not within ``timeout``."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not condition():
        if loop.time() > end:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)
