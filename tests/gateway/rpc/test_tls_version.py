"""TLS 1.3 only: a TLS 1.2 client is refused, and the node's own channels never agree to 1.2.

Both means of :mod:`gateway.grpc_env` and :mod:`gateway.rpc.auth` are
exercised: the cipher suites stop TLS 1.2 in the handshake, on the server and
on outgoing channels; the interceptor refuses any call whose connection is
not TLS 1.3, should the suites not have been applied.
"""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
import threading
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from certs.ca_store import node_dns_name
from gateway import grpc_env
from gateway.errors import NotAuthenticatedError
from gateway.rpc.auth import AuthInterceptor
from gateway.rpc.server import NodeServer
from gateway.tls import RevocationList, channel_credentials, node_channel
from tests.support.pki import HL, RR, Credential, Federation, StartNode


def _handshake(node: NodeServer, client: Credential, ca_file: Path, version: ssl.TLSVersion) -> str:
    """A TLS handshake with the node allowing at most ``version``: the version agreed."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(ca_file))
    context.load_cert_chain(client.cert_file, client.key_file)
    context.maximum_version = version
    context.set_alpn_protocols(["h2"])
    host, port = node.address.rsplit(":", 1)
    with (
        socket.create_connection((host, int(port)), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname=node_dns_name(node.config.node.id)) as tls,
    ):
        agreed = tls.version()
    assert agreed is not None
    return agreed


def test_the_cipher_suites_were_set_before_grpc_started() -> None:
    assert grpc_env.applied_before_grpc
    assert os.environ["GRPC_SSL_CIPHER_SUITES"] == grpc_env.CIPHER_SUITES


async def test_a_tls12_only_client_is_refused_in_the_handshake(
    federation: Federation, start_node: StartNode
) -> None:
    node = await start_node(federation.config(federation.node(RR)))
    politie = federation.partner(RR, "politie-rr", "politie")
    with pytest.raises((ssl.SSLError, ConnectionError)):
        await asyncio.to_thread(
            _handshake, node, politie, federation.ca_file, ssl.TLSVersion.TLSv1_2
        )
    agreed = await asyncio.to_thread(
        _handshake, node, politie, federation.ca_file, ssl.TLSVersion.TLSv1_3
    )
    assert agreed == "TLSv1.3"


class _Tls12Server:
    """A TLS 1.2-only server presenting a node certificate, recording how handshakes end."""

    def __init__(self, node: Credential, ca_file: Path) -> None:
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(ca_file))
        self.context.load_cert_chain(node.cert_file, node.key_file)
        self.context.maximum_version = ssl.TLSVersion.TLSv1_2
        self.context.set_alpn_protocols(["h2"])
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.outcomes: list[str] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        self.listener.settimeout(10)
        try:
            raw, _ = self.listener.accept()
        except OSError:
            return
        with raw:
            try:
                with self.context.wrap_socket(raw, server_side=True) as tls:
                    self.outcomes.append(f"agreed {tls.version()}")
            except (ssl.SSLError, OSError) as exc:
                self.outcomes.append(f"refused {exc}")

    def close(self) -> None:
        self.listener.close()
        self.thread.join(10)


async def test_an_outgoing_channel_does_not_agree_to_tls12(federation: Federation) -> None:
    server = _Tls12Server(federation.node(HL), federation.ca_file)
    rr = federation.node(RR)
    try:
        creds = channel_credentials(federation.ca_file, rr.cert_file, rr.key_file)
        async with node_channel(f"127.0.0.1:{server.port}", HL, creds) as channel:
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await health_pb2_grpc.HealthStub(channel).Check(
                    health_pb2.HealthCheckRequest(), timeout=3
                )
        assert err.value.code() is grpc.StatusCode.UNAVAILABLE
    finally:
        server.close()
    (outcome,) = server.outcomes
    assert outcome.startswith("refused"), outcome
    assert "NO_SHARED_CIPHER" in outcome or "UNSUPPORTED_PROTOCOL" in outcome, outcome


class _Context:
    """A servicer context as far as the interceptor's authentication reads it."""

    def __init__(self, auth: dict[str, list[bytes]]) -> None:
        self.auth = auth

    def auth_context(self) -> dict[str, list[bytes]]:
        return self.auth


@pytest.mark.parametrize("version", [[b"TLSv1.2"], [], [b"TLSv1.3", b"TLSv1.2"]])
def test_the_interceptor_refuses_a_connection_that_is_not_tls13(
    federation: Federation, version: list[bytes]
) -> None:
    politie = federation.partner(RR, "politie-rr", "politie")
    interceptor = AuthInterceptor(RR, RevocationList(None, federation.ca_file))
    pem = [politie.cert_file.read_bytes()]
    context: Any = _Context({"ssl_tls_version": version, "x509_pem_cert": pem})
    with pytest.raises(NotAuthenticatedError, match=r"TLSv1\.3 only"):
        interceptor._authenticate(context)
    # The same certificate on a TLS 1.3 connection is fine.
    context = _Context({"ssl_tls_version": [b"TLSv1.3"], "x509_pem_cert": pem})
    assert interceptor._authenticate(context).identity.org_id == "politie-rr"
