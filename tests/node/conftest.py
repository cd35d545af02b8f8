"""Two whole nodes (keys, policy, audit, cases) that witness each other, on loopback mTLS."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from gateway.config import load_config
from gateway.devkeys import DevKeys
from gateway.node import Node, open_node
from gateway.tls import channel_credentials, node_channel
from tests.gateway.conftest import HL, RR, Credential, Federation


def free_port() -> int:
    """A loopback port that was free a moment ago (peers need addresses before start)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Pair:
    """Nodes RR and HL, their CA, their keys and a few certificates."""

    fed: Federation
    keys: DevKeys
    nodes: dict[str, Node]

    def channel(self, node_id: str, cred: Credential) -> grpc.aio.Channel:
        """An mTLS channel to ``node_id`` presenting ``cred``."""
        creds = channel_credentials(self.fed.ca_file, cred.cert_file, cred.key_file)
        return node_channel(self.nodes[node_id].address, node_id, creds)


@pytest.fixture
async def pair(tmp_path: Path, db_url: str) -> AsyncIterator[Pair]:
    """RR on ``db_url`` (SQLite, then PostgreSQL), HL on SQLite; each witnesses the other."""
    fed = Federation(tmp_path / "pki")
    keys = DevKeys(tmp_path / "keys")
    ports = {RR: free_port(), HL: free_port()}
    nodes: dict[str, Node] = {}
    try:
        for node_id in (RR, HL):
            other = HL if node_id == RR else RR
            extra = keys.node_sections(
                node_id,
                [(other, f"127.0.0.1:{ports[other]}")],
                checkpoint_every_records=1,
                checkpoint_every_seconds=1,
            )
            if node_id == RR:
                extra += f'\n[database]\nurl = "{db_url}"\n'
            path = fed.write_config(fed.node(node_id), extra=extra)
            text = path.read_text().replace("127.0.0.1:0", f"127.0.0.1:{ports[node_id]}")
            path.write_text(text)
            node = open_node(load_config(path, environ={}))
            await node.start()
            nodes[node_id] = node
        yield Pair(fed, keys, nodes)
    finally:
        for node in nodes.values():
            await node.stop(grace=None)
