"""CRL numbers: a node never lets an older CRL undo a revocation, not even across a restart."""

from __future__ import annotations

import datetime as dt

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from grpc_health.v1 import health_pb2, health_pb2_grpc

from certs.authority import build_crl, crl_number
from gateway.config import ConfigError
from gateway.rpc.server import NodeServer, build_server
from gateway.tls import load_crl
from tests.support.pki import RR, Credential, Federation, LogCapture, StartNode, channel_to


async def _health_code(node: NodeServer, cred: Credential, federation: Federation) -> str:
    async with channel_to(node, cred, federation.ca_file) as channel:
        try:
            await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=5
            )
        except grpc.aio.AioRpcError as exc:
            return exc.code().name
    return "OK"


def _write_crl(federation: Federation, number: int | None) -> None:
    """Put a CRL revoking nothing in place: numbered, or without a number as old CAs wrote."""
    if number is not None:
        crl = build_crl(federation.key, federation.cert, [], number=number)
    else:
        now = dt.datetime.now(dt.UTC)
        crl = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(federation.cert.subject)
            .last_update(now)
            .next_update(now + dt.timedelta(days=7))
            .sign(federation.key, hashes.SHA256())
        )
    federation.crl_file.write_bytes(crl.public_bytes(serialization.Encoding.PEM))


async def test_an_older_crl_is_refused_and_the_revocation_stays(
    federation: Federation, start_node: StartNode, logs: LogCapture
) -> None:
    node = await start_node(federation.config(federation.node(RR)))
    politie = federation.partner(RR, "politie-rr", "politie")
    federation.revoke(politie)
    assert await _health_code(node, politie, federation) == "UNAUTHENTICATED"
    in_force = crl_number(load_crl(federation.crl_file, federation.ca_file))
    assert in_force is not None

    # A validly signed but older CRL, from before the revocation, is put back.
    _write_crl(federation, in_force - 1)
    assert await _health_code(node, politie, federation) == "UNAUTHENTICATED"
    (failure,) = logs.events("crl_reload_failed")
    assert f"CRL number {in_force - 1} is lower than {in_force}" in failure["reason"]
    assert failure["level"] == "error"
    # A newer one is taken as usual.
    _write_crl(federation, in_force + 1)
    assert await _health_code(node, politie, federation) == "OK"
    assert node.revocations.number == in_force + 1


async def test_an_older_crl_cannot_come_back_across_a_restart(
    federation: Federation, start_node: StartNode
) -> None:
    config = federation.config(federation.node(RR))
    node = await start_node(config)
    politie = federation.partner(RR, "politie-rr", "politie")
    federation.revoke(politie)
    assert await _health_code(node, politie, federation) == "UNAUTHENTICATED"
    in_force = node.revocations.number
    await node.stop(grace=None)

    _write_crl(federation, in_force - 1)
    with pytest.raises(ConfigError, match=r"tls\.crl_file: .*is lower than"):
        build_server(config)


async def test_a_crl_without_a_number_is_refused_at_start(federation: Federation) -> None:
    config = federation.config(federation.node(RR))
    _write_crl(federation, None)
    with pytest.raises(ConfigError, match=r"tls\.crl_file: the CRL carries no CRL number"):
        build_server(config)
