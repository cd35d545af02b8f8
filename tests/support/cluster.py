"""Several whole nodes that find each other through a signed federation directory."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest
import yaml
from schakel.v1 import common_pb2

from adapters.sdk import encrypt_subject
from gateway.app import Node, open_node
from gateway.config import load_config
from gateway.dev.keys import DevKeys
from gateway.tls import channel_credentials, node_channel
from policy import signing
from policy.pseudonyms import Ciphertext, subject_point
from policy.pseudonyms.hazmat.group import mul
from tests.support.chain import Chain, start_chain
from tests.support.pki import (
    Credential,
    Federation,
    logs,  # noqa: F401 - the fixture, for these tests too
)
from tests.support.ports import free_port

BSN = "111222333"
PURPOSE = "zvh.complexe-casuistiek"


def write_directory(path: Path, key: Path, nodes: Iterable[tuple[str, str]]) -> None:
    """Write and sign a directory listing (node id, address) pairs."""
    doc = {"federation": "test", "nodes": [{"id": n, "address": a} for n, a in nodes]}
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    signing.sign_bundle(path, key)


@dataclass
class Cluster:
    """Running nodes, their CA, keys and the signed directory they share."""

    fed: Federation
    keys: DevKeys
    directory: Path
    directory_key: Path
    addresses: dict[str, str]
    nodes: dict[str, Node] = field(default_factory=dict)
    chain: Chain | None = None

    def channel(self, node_id: str, cred: Credential) -> grpc.aio.Channel:
        """An mTLS channel to ``node_id`` presenting ``cred``."""
        creds = channel_credentials(self.fed.ca_file, cred.cert_file, cred.key_file)
        return node_channel(self.addresses[node_id], node_id, creds)

    def subject(self, bsn: str = BSN) -> common_pb2.EncryptedPseudonym:
        """A subject as a partner sends it: encrypted under the federation key."""
        return encrypt_subject("bsn", bsn, self.keys.global_public_key())

    def subject_for(
        self, asking: str, bsn: str = BSN
    ) -> Callable[[str], common_pb2.EncryptedPseudonym]:
        """What node ``asking`` sends each peer: the subject in that peer's domain.

        Converted here, through the same chain the nodes use (the tests' keys
        hold every share), so that no test waits on a transcryptor call.
        """
        chain = self.keys.chain()
        ct = Ciphertext.from_proto(self.subject(bsn))
        return lambda peer: chain.transcrypt(ct, peer).to_proto()

    def pseudonym_at(self, node_id: str, bsn: str = BSN) -> str:
        """The subject's node-domain pseudonym at ``node_id``."""
        point = subject_point("bsn", bsn)
        return mul(self.keys.chain().pseudonymisation_factor(node_id), point, "test").hex()

    def relist(self, nodes: Iterable[tuple[str, str]]) -> None:
        """Replace the directory with a newly signed one."""
        write_directory(self.directory, self.directory_key, nodes)


async def start_cluster(
    root: Path,
    node_ids: list[str],
    *,
    db_url: str | None = None,
    extra_listed: Iterable[tuple[str, str]] = (),
    keys: DevKeys | None = None,
) -> Cluster:
    """Start ``node_ids`` (the first on ``db_url`` if given) sharing one signed directory.

    ``extra_listed`` adds directory entries no node here serves (down peers).
    """
    fed = Federation(root / "pki")
    keys = keys or DevKeys(root / "keys")
    directory_key = root / "directory.key"
    signing.generate_key(directory_key)
    directory = root / "directory.yaml"
    addresses = {n: f"127.0.0.1:{free_port()}" for n in node_ids}
    addresses |= dict(extra_listed)
    write_directory(directory, directory_key, addresses.items())
    cluster = Cluster(fed, keys, directory, directory_key, addresses)
    try:
        cluster.chain = await start_chain(fed, keys)
        for i, node_id in enumerate(node_ids):
            extra = keys.node_sections(node_id, transcryptors=cluster.chain.endpoints)
            extra += f"""
[federation]
directory = "{directory}"
public_key = "{signing.public_key_path(directory_key)}"
reload_seconds = 1
"""
            if i == 0 and db_url is not None:
                extra += f'\n[database]\nurl = "{db_url}"\n'
            path = fed.write_config(fed.node(node_id), extra=extra)
            path.write_text(path.read_text().replace("127.0.0.1:0", addresses[node_id]))
            node = open_node(load_config(path, environ={}))
            await node.start()
            cluster.nodes[node_id] = node
    except BaseException:
        await stop_cluster(cluster)
        raise
    return cluster


async def stop_cluster(cluster: Cluster) -> None:
    """Stop every node of the cluster."""
    await asyncio.gather(*(node.stop(grace=None) for node in cluster.nodes.values()))
    if cluster.chain is not None:
        await cluster.chain.stop()


A, B, C = "zvh-a", "zvh-b", "zvh-c"


@pytest.fixture
async def trio(tmp_path: Path, db_url: str) -> AsyncIterator[Cluster]:
    """Nodes A, B (on ``db_url``: SQLite, then PostgreSQL) and C."""
    cluster = await start_cluster(tmp_path, [B, A, C], db_url=db_url)
    try:
        yield cluster
    finally:
        await stop_cluster(cluster)
