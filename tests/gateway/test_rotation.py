"""The node's own certificate rotates on a running server, without a restart."""

from __future__ import annotations

import asyncio
import socket
import ssl
from pathlib import Path

from cryptography import x509
from grpc_health.v1 import health_pb2, health_pb2_grpc

from certs.ca_store import node_dns_name
from gateway.rpc.server import NodeServer
from tests.support.pki import RR, Credential, Federation, LogCapture, StartNode, channel_to


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
