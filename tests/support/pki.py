"""A throw-away federation PKI and running nodes on loopback, for the gateway tests."""

from __future__ import annotations

import datetime as dt
import io
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from certs.authority import Validity, build_crl, create_root_ca, issue
from certs.ca_store import (
    node_dns_name,
    write_certificate,
    write_private_key,
)
from certs.identity import Identity, PeerKind, make_identity, transcryptor_dns_name
from gateway.config import NodeConfig, load_config
from gateway.logging import configure_logging
from gateway.rpc.server import NodeServer, Servicers, build_server
from gateway.tls import channel_credentials, node_channel

OIN = "00000001823288444000"
RR = "zvh-rotterdam-rijnmond"
HL = "zvh-haaglanden"


@dataclass
class Credential:
    """A certificate and key on disk."""

    identity: Identity
    cert: x509.Certificate
    cert_file: Path
    key_file: Path


@dataclass
class Federation:
    """A CA in a temporary directory that issues certificates on demand."""

    root: Path
    name: str = "Test federatie CA"
    revoked: list[tuple[int, dt.datetime]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.key, self.cert = create_root_ca(self.name)
        self.ca_file = self.root / "ca.pem"
        write_certificate(self.ca_file, self.cert, force=True)
        self.crl_file = self.root / "crl.pem"
        self.publish_crl()

    def credential(
        self,
        stem: str,
        identity: Identity,
        *,
        validity: Validity | None = None,
        force: bool = False,
    ) -> Credential:
        """Issue ``identity`` and write it as ``<stem>.pem``/``<stem>.key``."""
        names = [node_dns_name(identity.node_id)] if identity.kind is PeerKind.NODE else []
        if identity.kind is PeerKind.TRANSCRYPTOR:
            names = [transcryptor_dns_name(identity.org_id)]
        key, cert = issue(
            self.key,
            self.cert,
            identity,
            validity=validity or Validity.days(30),
            dns_names=names,
        )
        cert_file, key_file = self.root / f"{stem}.pem", self.root / f"{stem}.key"
        write_private_key(key_file, key, force=force)
        write_certificate(cert_file, cert, force=force)
        return Credential(identity, cert, cert_file, key_file)

    def node(self, node_id: str, **kw: Any) -> Credential:
        return self.credential(
            f"node-{node_id}", make_identity(PeerKind.NODE, node_id=node_id, oin=OIN), **kw
        )

    def partner(self, node_id: str, org_id: str, org_type: str, **kw: Any) -> Credential:
        identity = make_identity(
            PeerKind.PARTNER, node_id=node_id, org_id=org_id, org_type=org_type, oin=OIN
        )
        return self.credential(f"{node_id}-{org_id}", identity, **kw)

    def officer(self, node_id: str, role: str) -> Credential:
        identity = make_identity(
            PeerKind.OFFICER,
            node_id=node_id,
            org_id=node_id,
            org_type="zvh",
            roles={role},
            oin=OIN,
        )
        return self.credential(f"{node_id}-{role}", identity)

    def collector(self) -> Credential:
        identity = make_identity(
            PeerKind.COLLECTOR, org_id="stuurgroep", roles={"landelijk"}, oin=OIN
        )
        return self.credential("collector", identity)

    def transcryptor(self, transcryptor_id: str) -> Credential:
        identity = make_identity(PeerKind.TRANSCRYPTOR, org_id=transcryptor_id, oin=OIN)
        return self.credential(f"transcryptor-{transcryptor_id}", identity)

    def revoke(self, cred: Credential) -> None:
        self.revoked.append((cred.cert.serial_number, dt.datetime.now(dt.UTC)))
        self.publish_crl()

    def publish_crl(self) -> None:
        crl = build_crl(self.key, self.cert, self.revoked)
        tmp = self.crl_file.with_suffix(".tmp")
        tmp.write_bytes(crl.public_bytes(serialization.Encoding.PEM))
        tmp.replace(self.crl_file)

    def write_config(self, node: Credential, *, extra: str = "", crl: bool = True) -> Path:
        """A node.toml for ``node`` listening on a free loopback port."""
        path = self.root / f"{node.identity.node_id}.toml"
        crl_line = f'crl_file = "{self.crl_file}"\n' if crl else ""
        path.write_text(
            f"""
[node]
id = "{node.identity.node_id}"
listen = "127.0.0.1:0"
state_dir = "{self.root / ("state-" + node.identity.node_id)}"

[tls]
ca_file = "{self.ca_file}"
cert_file = "{node.cert_file}"
key_file = "{node.key_file}"
{crl_line}{extra}"""
        )
        return path

    def config(self, node: Credential, **kw: Any) -> NodeConfig:
        return load_config(self.write_config(node, **kw), environ={})


@pytest.fixture
def federation(tmp_path: Path) -> Federation:
    """A fresh CA with its (empty) CRL."""
    return Federation(tmp_path)


class LogCapture:
    """The JSON log lines the node wrote during a test."""

    def __init__(self) -> None:
        self.stream = io.StringIO()

    def lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.stream.getvalue().splitlines() if line]

    def events(self, event: str) -> list[dict[str, Any]]:
        return [line for line in self.lines() if line.get("event") == event]


@pytest.fixture
def logs() -> LogCapture:
    """Route the node's structlog output into a buffer for the test."""
    capture = LogCapture()
    configure_logging("debug", stream=capture.stream)
    return capture


StartNode = Callable[..., Any]


@pytest.fixture
async def start_node() -> AsyncIterator[StartNode]:
    """Start nodes for a test; every one is stopped at the end."""
    nodes: list[NodeServer] = []

    async def start(config: NodeConfig, servicers: Servicers | None = None) -> NodeServer:
        node = build_server(config, servicers)
        await node.start()
        nodes.append(node)
        return node

    yield start
    for node in nodes:
        await node.stop(grace=None)


def channel_to(node: NodeServer, cred: Credential, ca_file: Path) -> grpc.aio.Channel:
    """An mTLS channel to ``node`` presenting ``cred``."""
    creds = channel_credentials(ca_file, cred.cert_file, cred.key_file)
    return node_channel(node.address, node.config.node.id, creds)
