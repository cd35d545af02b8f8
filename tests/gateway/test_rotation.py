"""The node's own certificate rotates without a restart: served, and on outgoing channels."""

from __future__ import annotations

import asyncio
import socket
import ssl
from pathlib import Path
from typing import Any

import grpc
from cryptography import x509
from grpc_health.v1 import health_pb2, health_pb2_grpc
from schakel.v1 import federation_pb2

from certs.ca_store import node_dns_name
from gateway.federation import Peer, PeerClient
from gateway.rpc.server import NodeServer, Servicers
from gateway.rpc.stand_in import UnimplementedFederationService
from gateway.tls import ClientCertificates
from tests.support.pki import (
    HL,
    RR,
    Credential,
    Federation,
    LogCapture,
    StartNode,
    channel_to,
)


def _served_certificate(node: NodeServer, client: Credential, ca_file: Path) -> x509.Certificate:
    """Complete a fresh TLS handshake with the node and return the certificate it served."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(ca_file))
    context.load_cert_chain(client.cert_file, client.key_file)
    context.set_alpn_protocols(["h2"])
    host, port = node.address.rsplit(":", 1)
    with (
        socket.create_connection((host, int(port)), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname=node_dns_name(node.config.node.id)) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der)


async def _serving(channel: object) -> bool:
    reply = await health_pb2_grpc.HealthStub(channel).Check(
        health_pb2.HealthCheckRequest(), timeout=5
    )
    return reply.status == health_pb2.HealthCheckResponse.SERVING


async def test_a_rotated_certificate_is_served_to_new_connections_while_old_ones_keep_working(
    federation: Federation, start_node: StartNode, logs: LogCapture
) -> None:
    first = federation.node(RR)
    node = await start_node(federation.config(first))
    politie = federation.partner(RR, "politie-rr", "politie")
    served = await asyncio.to_thread(_served_certificate, node, politie, federation.ca_file)
    assert served.serial_number == first.cert.serial_number

    async with channel_to(node, politie, federation.ca_file) as old_channel:
        assert await _serving(old_channel)
        second = federation.node(RR, force=True)
        assert second.cert.serial_number != first.cert.serial_number

        served = await asyncio.to_thread(_served_certificate, node, politie, federation.ca_file)
        assert served.serial_number == second.cert.serial_number
        assert await _serving(old_channel)
        async with channel_to(node, politie, federation.ca_file) as new_channel:
            assert await _serving(new_channel)
    assert node.certificates.generation >= 1
    assert logs.events("tls_rotated")


async def test_a_broken_rotation_keeps_the_last_good_certificate(
    federation: Federation, start_node: StartNode, logs: LogCapture
) -> None:
    good = federation.node(RR)
    node = await start_node(federation.config(good))
    politie = federation.partner(RR, "politie-rr", "politie")
    # A key from another certificate: a rotation caught half-way.
    other = federation.partner(RR, "ggz-rr", "ggz")
    good.key_file.write_bytes(other.key_file.read_bytes())

    served = await asyncio.to_thread(_served_certificate, node, politie, federation.ca_file)
    assert served.serial_number == good.cert.serial_number
    async with channel_to(node, politie, federation.ca_file) as channel:
        assert await _serving(channel)
    failures = logs.events("tls_reload_failed")
    assert failures
    assert failures[0]["key"] == "tls.key_file"


class CallerSerialService(UnimplementedFederationService):
    """Test-only: HitNoHit answers with the serial of the certificate the caller presented."""

    async def HitNoHit(
        self, request: federation_pb2.FederatedHitRequest, context: grpc.aio.ServicerContext
    ) -> federation_pb2.FederatedHitResponse:
        pem = context.auth_context()["x509_pem_cert"][0]
        serial = x509.load_pem_x509_certificate(pem).serial_number
        return federation_pb2.FederatedHitResponse(contact_handle=f"{serial:x}")


async def _presented_serial(client: PeerClient) -> int:
    async def ask(peer: Peer, stub: Any, timeout: float) -> str:
        reply = await stub.HitNoHit(federation_pb2.FederatedHitRequest(), timeout=timeout)
        return str(reply.contact_handle)

    result = await client.fan_out("HitNoHit", ask, deadline=5, idempotent=True)
    assert not result.unanswered, result.unanswered
    return int(result.answers[HL], 16)


async def test_a_rotated_node_certificate_is_used_by_the_next_outgoing_call(
    federation: Federation, start_node: StartNode, logs: LogCapture
) -> None:
    hl = await start_node(
        federation.config(federation.node(HL)), Servicers(federation=CallerSerialService())
    )
    first = federation.node(RR)
    credentials = ClientCertificates(federation.ca_file, first.cert_file, first.key_file)
    client = PeerClient(RR, lambda: [Peer(HL, hl.address)], credentials)
    try:
        assert await _presented_serial(client) == first.cert.serial_number
        second = federation.node(RR, force=True)
        # The old certificate is revoked at once, as after a key compromise.
        federation.revoke(first)
        assert await _presented_serial(client) == second.cert.serial_number
    finally:
        await client.close()
    assert [e["use"] for e in logs.events("tls_rotated")] == ["ClientCertificates"]


async def test_a_rotation_to_another_nodes_certificate_is_not_served(
    federation: Federation, start_node: StartNode, logs: LogCapture
) -> None:
    own = federation.node(RR)
    node = await start_node(federation.config(own))
    politie = federation.partner(RR, "politie-rr", "politie")
    stranger = federation.node(HL)
    own.key_file.write_bytes(stranger.key_file.read_bytes())
    own.cert_file.write_bytes(stranger.cert_file.read_bytes())

    served = await asyncio.to_thread(_served_certificate, node, politie, federation.ca_file)
    assert served.serial_number == own.cert.serial_number
    (failure,) = logs.events("tls_reload_failed")
    assert failure["key"] == "tls.cert_file"
    assert f"schakel://node/{HL}, not of this node {RR}" in failure["reason"]
