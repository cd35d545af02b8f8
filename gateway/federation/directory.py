"""The signed federation directory: which nodes exist, where they listen, which keys they hold.

The directory is one YAML file, signed like a policy bundle: a detached
``<file>.sig`` holding the base64 Ed25519 signature over the file's exact
bytes, made with the federation directory key (see ``schakel federation``)::

    federation: zvh-nl            # optional: a name for reports
    nodes:
      - id: zvh-haaglanden        # the node id in its certificate
        address: zvh-haaglanden.example.nl:7443
        region: Haaglanden        # optional
        log_key: "zvh-haaglanden+1234abcd+AQ..."     # optional: checkpoint vkey
        witness_key: "zvh-haaglanden+5678ef01+BA..." # optional: cosignature vkey

A node loads it with the pinned public key. An unsigned, tampered or
foreign-signed file is refused; on reload a bad file is logged and the last
good directory stays in force. The address is only where to dial: the peer
must still present the certificate of the listed node id.

The keys say who witnesses whom (see :mod:`gateway.federation.witnesses`):
a node with a ``witness_key`` is asked to cosign its peers' checkpoints, and
the log of a node with a ``log_key`` is witnessed by its peers. Both must be
named after the node's id, ``log_key`` of type Ed25519 (0x01) and
``witness_key`` of type cosignature/v1 (0x04); a directory with a key that
is not is refused like a malformed one.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from certs.identity import IdentityError, check_slug
from gateway.audit import notes
from gateway.logging import get_logger
from policy.model import PolicyError
from policy.signing import load_public_key, read_signed, signature_path

log = get_logger("federation.directory")

NODE_URI_PREFIX = "schakel://node/"
_ADDRESS = re.compile(r"^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):[0-9]{1,5}$")
_TOP_KEYS = {"federation", "nodes"}
_NODE_KEYS = {"id", "address", "region", "identity", "log_key", "witness_key"}


class DirectoryError(ValueError):
    """The directory is unusable: unsigned, tampered, or malformed (the message says where)."""


@dataclass(frozen=True)
class Peer:
    """One node of the federation as the directory lists it."""

    node_id: str
    address: str
    """``host:port`` of the node's gRPC endpoint."""
    region: str = ""
    log_key: str = ""
    """The node's checkpoint verifier key (C2SP vkey), if listed."""
    witness_key: str = ""
    """The node's cosignature verifier key (C2SP vkey), if listed."""

    @property
    def identity(self) -> str:
        """The URI SAN the node's certificate carries."""
        return NODE_URI_PREFIX + self.node_id


@dataclass(frozen=True)
class Directory:
    """A verified directory: the federation's nodes, in file order."""

    name: str
    peers: tuple[Peer, ...]

    def get(self, node_id: str) -> Peer | None:
        """The entry of ``node_id``, or None when it is not listed."""
        for peer in self.peers:
            if peer.node_id == node_id:
                return peer
        return None

    def others(self, node_id: str) -> tuple[Peer, ...]:
        """Every node except ``node_id`` (a node's peers)."""
        return tuple(p for p in self.peers if p.node_id != node_id)


def _text(entry: dict[str, Any], key: str, where: str, *, required: bool) -> str:
    value = entry.get(key, "")
    if value is None or (required and value == ""):
        raise DirectoryError(f"{where}.{key}: is required")
    if not isinstance(value, str):
        raise DirectoryError(f"{where}.{key}: must be a string, not {type(value).__name__}")
    return value


def _peer(entry: object, where: str) -> Peer:
    if not isinstance(entry, dict):
        raise DirectoryError(f"{where}: expected a mapping with id and address")
    unknown = sorted(set(map(str, entry)) - _NODE_KEYS)
    if unknown:
        raise DirectoryError(f"{where}: unknown key(s) {', '.join(unknown)}")
    node_id = _text(entry, "id", where, required=True)
    try:
        check_slug(node_id, "node id")
    except IdentityError as exc:
        raise DirectoryError(f"{where}.id: {exc}") from exc
    address = _text(entry, "address", where, required=True)
    if not _ADDRESS.match(address):
        raise DirectoryError(f"{where}.address: expected host:port, got {address!r}")
    identity = _text(entry, "identity", where, required=False)
    if identity and identity != NODE_URI_PREFIX + node_id:
        raise DirectoryError(
            f"{where}.identity: {identity!r} is not the certificate URI of node {node_id!r}"
        )
    return Peer(
        node_id=node_id,
        address=address,
        region=_text(entry, "region", where, required=False),
        log_key=_vkey(entry, "log_key", where, node_id, notes.ED25519),
        witness_key=_vkey(entry, "witness_key", where, node_id, notes.COSIGNATURE_V1),
    )


_KEY_TYPES = {notes.ED25519: "Ed25519 (0x01)", notes.COSIGNATURE_V1: "cosignature/v1 (0x04)"}


def peer_key(node_id: str, text: str, sig_type: int) -> notes.Verifier:
    """``text`` as ``node_id``'s vkey of ``sig_type``; ValueError says what is wrong.

    A checkpoint key must be Ed25519 (0x01), a witness key cosignature/v1
    (0x04), and both are named after the node: that name is the origin of
    its checkpoints and the name on its cosignatures.
    """
    verifier = notes.Verifier.from_vkey(text)
    if verifier.name != node_id:
        raise ValueError(f"the key is named {verifier.name!r}, not after node {node_id!r}")
    if verifier.sig_type != sig_type:
        raise ValueError(f"must be a key of type {_KEY_TYPES[sig_type]}")
    return verifier


def _vkey(entry: dict[str, Any], key: str, where: str, node_id: str, sig_type: int) -> str:
    text = _text(entry, key, where, required=False)
    if text:
        try:
            peer_key(node_id, text, sig_type)
        except ValueError as exc:
            raise DirectoryError(f"{where}.{key}: {exc}") from exc
    return text


def parse_directory(data: bytes, source: str) -> Directory:
    """Parse directory bytes (already verified); DirectoryError names the bad entry."""
    try:
        doc = yaml.safe_load(data.decode("utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise DirectoryError(f"{source}: not valid YAML: {exc}") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("nodes"), list):
        raise DirectoryError(f"{source}: expected a list 'nodes' at the top level")
    unknown = sorted(set(map(str, doc)) - _TOP_KEYS)
    if unknown:
        raise DirectoryError(f"{source}: unknown top-level key(s) {', '.join(unknown)}")
    name = doc.get("federation", "")
    if not isinstance(name, str):
        raise DirectoryError(f"{source}: federation: must be a string")
    if not doc["nodes"]:
        raise DirectoryError(f"{source}: 'nodes' is empty")
    peers: list[Peer] = []
    seen: set[str] = set()
    for i, entry in enumerate(doc["nodes"]):
        peer = _peer(entry, f"{source}: nodes[{i}]")
        if peer.node_id in seen:
            raise DirectoryError(f"{source}: nodes[{i}].id: {peer.node_id!r} is listed twice")
        seen.add(peer.node_id)
        peers.append(peer)
    return Directory(name, tuple(peers))


def load_directory(path: Path, key: Ed25519PublicKey) -> Directory:
    """Read, verify and parse a signed directory; DirectoryError says what is wrong."""
    try:
        data = read_signed(path, key)
    except PolicyError as exc:
        raise DirectoryError(str(exc).replace("bundle", "directory")) from exc
    return parse_directory(data, str(path))


def load_directory_key(path: Path) -> Ed25519PublicKey:
    """The pinned public directory key (PEM); DirectoryError if it is not an Ed25519 key."""
    try:
        return load_public_key(path)
    except PolicyError as exc:
        raise DirectoryError(str(exc).replace("policy key", "directory key")) from exc


def _stamp(path: Path) -> tuple[tuple[int, int, int], ...] | None:
    stamps = []
    for p in (path, signature_path(path)):
        try:
            st = os.stat(p)
        except OSError:
            return None
        stamps.append((st.st_ino, st.st_size, st.st_mtime_ns))
    return tuple(stamps)


class DirectoryStore:
    """The directory in force, re-read when its file or signature changes.

    :meth:`current` looks at the files at most every ``interval`` seconds,
    so callers may ask on every fan-out. A changed file that fails to verify
    or parse is logged and ignored: the last good directory stays.
    """

    def __init__(
        self,
        path: Path,
        key: Ed25519PublicKey,
        *,
        interval: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = path
        self._key = key
        self._interval = interval
        self._clock = clock
        self._lock = threading.Lock()
        self._stamp = _stamp(path)
        self._directory = load_directory(path, key)
        self._checked = clock()
        self.generation = 0
        """Incremented on every accepted reload."""

    @classmethod
    def from_files(cls, path: Path, key_path: Path, *, interval: float = 10.0) -> DirectoryStore:
        """Load the directory at ``path`` verified with the public key at ``key_path``."""
        return cls(path, load_directory_key(key_path), interval=interval)

    def current(self) -> Directory:
        """The directory in force (reloading it first if it is due and changed)."""
        if self._clock() - self._checked >= self._interval:
            self.refresh()
        return self._directory

    def refresh(self) -> bool:
        """Re-read the files now if they changed; True when a new directory took effect."""
        with self._lock:
            self._checked = self._clock()
            stamp = _stamp(self.path)
            if stamp == self._stamp:
                return False
            self._stamp = stamp
            try:
                directory = load_directory(self.path, self._key)
            except DirectoryError as exc:
                log.error(
                    "directory_reload_refused",
                    reason=str(exc),
                    keeping=len(self._directory.peers),
                )
                return False
            self._directory = directory
            self.generation += 1
            log.info("directory_loaded", nodes=len(directory.peers), generation=self.generation)
            return True
