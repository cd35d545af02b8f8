"""Two whole nodes (keys, policy, audit, cases) that witness each other, on loopback mTLS."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from gateway.app import Node, open_node
from gateway.config import load_config
from gateway.dev.keys import DevKeys
from gateway.tls import channel_credentials, node_channel
from tests.support.chain import Chain, start_chain
from tests.support.pki import HL, RR, Credential, Federation
from tests.support.ports import free_port


@dataclass
class Pair:
    """Nodes RR and HL, their CA, their keys and a few certificates."""

    fed: Federation
    keys: DevKeys
    nodes: dict[str, Node]
    chain: Chain | None = None

    def channel(self, node_id: str, cred: Credential) -> grpc.aio.Channel:
        """An mTLS channel to ``node_id`` presenting ``cred``."""
        creds = channel_credentials(self.fed.ca_file, cred.cert_file, cred.key_file)
        return node_channel(self.nodes[node_id].address, node_id, creds)


def _direct(_node_id: str, _peer_id: str, address: str) -> str:
    return address


async def start_pair(
    root: Path,
    db_url: str,
    extra: Callable[[str], str] = lambda _node_id: "",
    dial: Callable[[str, str, str], str] = _direct,
    allow: dict[str, str] | None = None,
    checkpoint_every_records: int = 1,
) -> Pair:
    """Start RR (on ``db_url``) and HL (SQLite); each witnesses the other.

    ``extra(node_id)`` adds config sections for one node (e.g. its partners);
    ``dial(node_id, peer_id, address)`` is the address ``node_id`` dials to
    reach its peer listening on ``address`` (e.g. a relay in front of it).
    ``allow`` replaces a transcryptor's allow-list (by id).
    ``checkpoint_every_records`` is 1 so that witness tests see a checkpoint
    per record; the benchmarks pass the production default.
    """
    fed = Federation(root / "pki")
    keys = DevKeys(root / "keys")
    ports = {RR: free_port(), HL: free_port()}
    pair = Pair(fed, keys, {})
    try:
        pair.chain = await start_chain(fed, keys, allow)
        for node_id in (RR, HL):
            other = HL if node_id == RR else RR
            sections = keys.node_sections(
                node_id,
                [(other, dial(node_id, other, f"127.0.0.1:{ports[other]}"))],
                checkpoint_every_records=checkpoint_every_records,
                checkpoint_every_seconds=1,
                transcryptors=pair.chain.endpoints,
            )
            if node_id == RR:
                sections += f'\n[database]\nurl = "{db_url}"\n'
            sections += extra(node_id)
            path = fed.write_config(fed.node(node_id), extra=sections)
            text = path.read_text().replace("127.0.0.1:0", f"127.0.0.1:{ports[node_id]}")
            path.write_text(text)
            node = open_node(load_config(path, environ={}))
            await node.start()
            pair.nodes[node_id] = node
    except BaseException:
        await stop_pair(pair)
        raise
    return pair


async def stop_pair(pair: Pair) -> None:
    """Stop whichever nodes of ``pair`` are running."""
    for node in pair.nodes.values():
        await node.stop(grace=None)
    if pair.chain is not None:
        await pair.chain.stop()


@pytest.fixture
async def pair(tmp_path: Path, db_url: str) -> AsyncIterator[Pair]:
    """RR on ``db_url`` (SQLite, then PostgreSQL), HL on SQLite; each witnesses the other."""
    started = await start_pair(tmp_path, db_url)
    try:
        yield started
    finally:
        await stop_pair(started)
