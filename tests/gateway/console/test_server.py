"""The console's port: off unless configured, its address checked, TLS 1.3 with a client
certificate or nothing, and an address in use named in the error."""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from gateway.app import Node, open_node
from gateway.config import ConfigError
from tests.support.pki import RR, Federation
from tests.support.ports import free_port


@pytest.fixture
async def console_node(federation: Federation) -> AsyncIterator[Node]:
    port = free_port()
    config = federation.config(
        federation.node(RR), extra=f'\n[console]\nlisten = "127.0.0.1:{port}"\n'
    )
    node = open_node(config)
    await node.start()
    yield node
    await node.stop(grace=None)


def test_a_bad_console_address_is_refused_naming_its_key(federation: Federation) -> None:
    with pytest.raises(ConfigError, match=r"console\.listen: .*not host:port"):
        federation.config(federation.node(RR), extra='\n[console]\nlisten = "nowhere"\n')


async def test_the_console_is_off_unless_configured(federation: Federation) -> None:
    node = open_node(federation.config(federation.node(RR)))
    try:
        assert node.console is None
    finally:
        await node.server.stop(None)
        node.parts.audit.close()


def _handshake(port: int, context: ssl.SSLContext) -> str:
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        tls.sendall(b"GET / HTTP/1.0\r\n\r\n")
        return tls.recv(64).decode(errors="replace")


async def test_tls_1_2_and_a_browser_without_certificate_are_refused_in_the_handshake(
    console_node: Node, federation: Federation
) -> None:
    assert console_node.console is not None
    port = console_node.console.port
    old = ssl.create_default_context(cafile=federation.ca_file)
    old.check_hostname = False
    old.maximum_version = ssl.TLSVersion.TLSv1_2
    with pytest.raises(ssl.SSLError):
        await asyncio.to_thread(_handshake, port, old)
    bare = ssl.create_default_context(cafile=federation.ca_file)
    bare.check_hostname = False
    # TLS 1.3 refuses a missing certificate after the client's side of the handshake:
    # the connection ends (or raises) without an HTTP answer.
    try:
        answer = await asyncio.to_thread(_handshake, port, bare)
    except (ssl.SSLError, ConnectionError):
        answer = ""
    assert answer == ""
    officer = federation.officer(RR, "fg")
    good = ssl.create_default_context(cafile=federation.ca_file)
    good.check_hostname = False
    good.load_cert_chain(officer.cert_file, officer.key_file)
    assert (await asyncio.to_thread(_handshake, port, good)).startswith("HTTP/1.0 303")


def _server_certificate(port: int, context: ssl.SSLContext) -> bytes:
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        der = tls.getpeercert(binary_form=True)
        assert der is not None
        return der


async def test_the_console_follows_a_rotation_of_the_node_certificate(
    console_node: Node, federation: Federation
) -> None:
    assert console_node.console is not None
    port = console_node.console.port
    officer = federation.officer(RR, "fg")
    client = ssl.create_default_context(cafile=federation.ca_file)
    client.check_hostname = False
    client.load_cert_chain(officer.cert_file, officer.key_file)
    before = await asyncio.to_thread(_server_certificate, port, client)
    rotated = federation.node(RR, force=True)
    after = await asyncio.to_thread(_server_certificate, port, client)
    assert after != before
    assert after == rotated.cert.public_bytes(Encoding.DER)
    assert console_node.console.tls.generation == 1
    other = federation.node("zvh-haaglanden")
    rotated.cert_file.write_bytes(other.cert_file.read_bytes())
    rotated.key_file.write_bytes(other.key_file.read_bytes())
    kept = await asyncio.to_thread(_server_certificate, port, client)
    assert kept == after, "another node's certificate is not taken"
    assert console_node.console.tls.generation == 1


async def test_a_console_address_in_use_is_named(federation: Federation, tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = federation.config(
            federation.node(RR), extra=f'\n[console]\nlisten = "127.0.0.1:{port}"\n'
        )
        node = open_node(config)
        try:
            with pytest.raises(ConfigError, match=r"console\.listen: cannot listen"):
                await node.start()
        finally:
            await node.stop(grace=None)
