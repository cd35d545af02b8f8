"""The federation: the signed peer directory and the client that calls peer nodes.

:func:`peer_client_for` builds the node's :class:`PeerClient` from its
config: peers come from the signed ``[federation]`` directory when one is
configured (hot-reloaded), otherwise from the ``[[peers]]`` entries.
"""

from __future__ import annotations

from gateway.config import NodeConfig, config_error
from gateway.federation.client import FanOut, PeerCallError, PeerClient, PeerHit
from gateway.federation.directory import Directory, DirectoryError, DirectoryStore, Peer
from gateway.tls import ClientCertificates, TlsFileError

__all__ = [
    "Directory",
    "DirectoryError",
    "DirectoryStore",
    "FanOut",
    "Peer",
    "PeerCallError",
    "PeerClient",
    "PeerHit",
    "load_directory_store",
    "peer_client_for",
]


def load_directory_store(config: NodeConfig) -> DirectoryStore | None:
    """The signed directory the config names, or None; ConfigError names the bad key."""
    section = config.federation
    if section.directory is None or section.public_key is None:
        return None
    try:
        return DirectoryStore.from_files(
            section.directory, section.public_key, interval=float(section.reload_seconds)
        )
    except DirectoryError as exc:
        raise config_error(config, "federation.directory", str(exc)) from exc


def peer_client_for(config: NodeConfig) -> PeerClient | None:
    """The node's peer client, or None when it has neither a directory nor ``[[peers]]``."""
    node_id = config.node.id
    store = load_directory_store(config)
    if store is None and not config.peers:
        return None
    tls = config.tls
    try:
        credentials = ClientCertificates(
            tls.ca_file,
            tls.cert_file,
            tls.key_file,
            node_id=node_id,
            passphrase_file=tls.key_passphrase_file,
        )
    except TlsFileError as exc:
        raise config_error(config, f"tls.{exc.key}", str(exc)) from exc
    if store is not None:
        directory = store

        def peers() -> tuple[Peer, ...]:
            return directory.current().others(node_id)

    else:
        static = tuple(
            Peer(p.id, p.address, log_key=p.log_key, witness_key=p.witness_key)
            for p in config.peers
        )

        def peers() -> tuple[Peer, ...]:
            return static

    return PeerClient(node_id, peers, credentials, concurrency=config.federation.concurrency)
