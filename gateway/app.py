"""A whole node: configuration in, a serving gRPC server with its background work out.

:func:`open_node` loads every piece the config names (pseudonym keys, the
signed policy bundle, the audit log with its checkpoint and witness keys,
the case registry and the case links), builds the servicers on them and the mTLS server around
them. :class:`Node` then runs the server, policy hot reload and the
background duties of :mod:`gateway.duties` (checkpoints, witnessing, the
retention purge), which the leader among a node's replicas does.

On SQLite the node is one process and holds the database file's lock
(:mod:`gateway.storage.exclusive`); on PostgreSQL any number of replicas
serve on one schema: tasks, answers and case locks go through the database.
"""

from __future__ import annotations

import asyncio
import functools
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import overload

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import Engine

from certs import hsm
from certs import keys as key_files
from gateway.audit import notes
from gateway.audit.checkpoint import Checkpointer
from gateway.audit.store import AuditLog
from gateway.audit.verify import Keys
from gateway.audit.witness import Witness
from gateway.caselocks import CaseLocks
from gateway.cases import CaseRegistry, FactVault
from gateway.cases.links import LinkStore
from gateway.chain import Link, TranscryptorChain
from gateway.config import ConfigError, NodeConfig, config_error
from gateway.console.server import ConsoleServer
from gateway.duties import REPLICA_GRACE, start_duties
from gateway.federation import Peer, PeerClient, peer_client_for
from gateway.federation.witnesses import (
    WitnessKeyError,
    WitnessKeys,
    WitnessRoster,
    transcryptor_logs,
    witness_keys,
)
from gateway.flows.bundles import keep_bundle
from gateway.flows.inzage import INZAGE_ACTIVITY
from gateway.flows.reconcile import reconcile_referrals
from gateway.logging import get_logger
from gateway.node_admin import AdminPort
from gateway.observability import otel
from gateway.parts import NodeParts
from gateway.rpc.audit import AuditService
from gateway.rpc.case import CaseService
from gateway.rpc.federation import FederationService
from gateway.rpc.partner import PartnerService
from gateway.rpc.server import NodeServer, Servicers, build_server, open_database
from gateway.storage.exclusive import ProcessLock, hold_sqlite
from gateway.storage.leader import Leadership, others_lead
from gateway.storage.shared import is_shared
from gateway.subjects import NodeSubjects
from gateway.tasks.broker import TaskBroker
from gateway.tasks.replicas import SharedTaskBroker
from gateway.tls import ClientCertificates, TlsFileError
from policy.model import PolicyError
from policy.pseudonyms import DomainKey, KeyFileError
from policy.pseudonyms.sealing import PassphraseFileError
from policy.store import PolicyStore

log = get_logger("node")


def _write_secret(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)


def load_signer(
    path: Path, name: str, sig_type: int, passphrase_file: Path | None = None
) -> notes.Signer:
    """Load an Ed25519 note key, creating it (0600) on first start like an SSH host key.

    With ``passphrase_file`` the key is encrypted PKCS#8 (a new one is written so).
    """
    if not path.exists():
        signer = notes.Signer.generate(name, sig_type)
        passphrase = (
            key_files.read_passphrase(passphrase_file) if passphrase_file is not None else None
        )
        _write_secret(path, key_files.private_key_pem(signer.private_key, passphrase))
        log.info("audit_key_created", path=str(path), vkey=signer.verifier().vkey())
        return signer
    key = key_files.load_private_key(path, passphrase_file)
    if not isinstance(key, Ed25519PrivateKey):
        raise notes.NoteError(f"{path}: not an Ed25519 private key")
    return notes.Signer(name, sig_type, key)


def _audit_signer(config: NodeConfig, which: str, sig_type: int) -> notes.Signer:
    """The audit key ``which`` (``signing_key`` or ``witness_key``); ConfigError names its key."""
    section, node_id = config.audit, config.node.id
    if which == "signing_key" and section.signing_key_pkcs11:
        try:
            key = hsm.load_ed25519_key(section.signing_key_pkcs11)
        except hsm.HsmError as exc:
            raise config_error(config, "audit.signing_key_pkcs11", str(exc)) from exc
        return notes.Signer(node_id, sig_type, key)
    default = "audit-log.key" if which == "signing_key" else "audit-witness.key"
    passphrase: Path | None = getattr(section, f"{which}_passphrase_file")
    try:
        return load_signer(
            _state_path(config, getattr(section, which), default), node_id, sig_type, passphrase
        )
    except key_files.KeyFileError as exc:
        bad = f"{which}_passphrase_file" if exc.path == passphrase else which
        raise config_error(config, f"audit.{bad}", str(exc)) from exc
    except (notes.NoteError, OSError, ValueError) as exc:
        raise config_error(config, f"audit.{which}", f"cannot load the audit key: {exc}") from exc


def _state_path(config: NodeConfig, configured: Path | None, default: str) -> Path:
    return configured if configured is not None else config.node.state_dir / default


def _load_subjects(config: NodeConfig) -> NodeSubjects | None:
    """The chain client and the node's own domain key; None when neither is configured."""
    section = config.pseudonyms
    if section.domain_key is None:
        return None
    try:
        own = DomainKey.load(section.domain_key, section.domain_key_passphrase_file)
    except PassphraseFileError as exc:
        raise config_error(config, "pseudonyms.domain_key_passphrase_file", str(exc)) from exc
    except KeyFileError as exc:
        raise config_error(config, "pseudonyms.domain_key", str(exc)) from exc
    if own.domain != config.node.id:
        raise config_error(
            config,
            "pseudonyms.domain_key",
            f"is the key of domain {own.domain!r}, not of this node {config.node.id!r}",
        )
    tls = config.tls
    try:
        credentials = ClientCertificates(
            tls.ca_file,
            tls.cert_file,
            tls.key_file,
            node_id=config.node.id,
            passphrase_file=tls.key_passphrase_file,
        )
    except TlsFileError as exc:
        raise config_error(config, f"tls.{exc.key}", str(exc)) from exc
    chain = TranscryptorChain(
        [Link(t.id, t.address) for t in config.transcryptors],
        credentials,
        batch_size=section.batch_size,
        timeout=float(section.timeout_seconds),
    )
    return NodeSubjects(chain, own)


def _load_policy(config: NodeConfig) -> PolicyStore | None:
    section = config.policy
    if section.bundle is None or section.public_key is None:
        return None
    try:
        return PolicyStore.from_files(
            section.bundle, section.public_key, interval=float(section.reload_seconds)
        )
    except (PolicyError, OSError, ValueError) as exc:
        raise config_error(config, "policy.bundle", str(exc)) from exc


def _peer_verifier(config: NodeConfig, index: int, which: str, text: str) -> notes.Verifier:
    try:
        return notes.Verifier.from_vkey(text)
    except notes.NoteError as exc:
        raise config_error(config, f"peers[{index}].{which}", str(exc)) from exc


def _transcryptor_logs(config: NodeConfig) -> dict[str, notes.Verifier]:
    """The checkpoint keys of the transcryptors whose logs this node witnesses."""
    try:
        return transcryptor_logs((t.id, t.log_key) for t in config.transcryptors if t.log_key)
    except WitnessKeyError as exc:
        index = next(i for i, t in enumerate(config.transcryptors) if t.id == exc.node_id)
        raise config_error(config, f"transcryptors[{index}].log_key", str(exc)) from exc


def _witness_keys(config: NodeConfig, peers: PeerClient | None) -> WitnessKeys:
    """The witness and log keys the peer list names at start; ConfigError names a bad one.

    With a ``[federation]`` directory the directory's keys count and
    ``[[peers]]`` is ignored (logged); without one, ``[[peers]]`` must give
    both keys of every peer, as before the directory carried keys.
    """
    if config.federation.directory is None:
        for i, p in enumerate(config.peers):
            _peer_verifier(config, i, "witness_key", p.witness_key)
            _peer_verifier(config, i, "log_key", p.log_key)
    elif config.peers:
        log.warning(
            "peers_section_ignored",
            reason="[federation] directory is configured: it names the peers and their "
            "witness and log keys, so [[peers]] is not used",
            peers=len(config.peers),
        )
    listed: list[Peer] = peers.peers() if peers is not None else []
    try:
        keys = witness_keys(listed, _transcryptor_logs(config))
    except WitnessKeyError as exc:
        if config.federation.directory is not None:
            raise config_error(config, "federation.directory", str(exc)) from exc
        index = next(i for i, p in enumerate(config.peers) if p.id == exc.node_id)
        raise config_error(config, f"peers[{index}].{exc.which}", str(exc)) from exc
    if config.audit.quorum > len(keys.witnesses):
        raise config_error(
            config,
            "audit.quorum",
            f"must be from 0 to the number of witnesses listed ({len(keys.witnesses)})",
        )
    return keys


def load_parts(config: NodeConfig, engine: Engine | None = None) -> NodeParts:
    """Load everything the config names; ConfigError names the key that is unusable."""
    subjects = _load_subjects(config)
    policy = _load_policy(config)
    signer = _audit_signer(config, "signing_key", notes.ED25519)
    cosigner = _audit_signer(config, "witness_key", notes.COSIGNATURE_V1)
    peers = peer_client_for(config)
    keys = _witness_keys(config, peers)
    vault_path = _state_path(config, config.cases.vault_key, "case-vault.key")
    try:
        if not vault_path.exists():
            vault_path.parent.mkdir(parents=True, exist_ok=True)
            FactVault.generate_key_file(vault_path)
        vault = FactVault.from_key_file(vault_path)
    except (OSError, ValueError) as exc:
        raise config_error(config, "cases.vault_key", str(exc)) from exc
    engine = engine or open_database(config)
    audit = AuditLog(engine, default_retention=timedelta(days=config.audit.retention_days))
    checkpointer = Checkpointer(
        audit,
        signer,
        every_records=config.audit.checkpoint_every_records,
        every_seconds=float(config.audit.checkpoint_every_seconds),
        witnesses=list(keys.witnesses.values()),
        quorum=config.audit.quorum,
    )
    witness = Witness(engine, cosigner, keys.logs)
    roster = (
        WitnessRoster(
            peers.peers,
            checkpointer,
            witness,
            quorum=config.audit.quorum,
            transcryptors=_transcryptor_logs(config),
        )
        if peers is not None
        else None
    )
    return NodeParts(
        config=config,
        engine=engine,
        audit=audit,
        checkpointer=checkpointer,
        witness=witness,
        registry=CaseRegistry(engine, vault),
        links=LinkStore(engine),
        policy=policy,
        subjects=subjects,
        log_key=signer.verifier(),
        witness_verifier=cosigner.verifier(),
        tasks=(SharedTaskBroker if is_shared(engine) else TaskBroker)(engine, vault),
        peers=peers,
        roster=roster,
        case_locks=CaseLocks(engine),
    )


class _WitnessesInForce(Sequence[notes.Verifier]):
    """The checkpointer's witness keys as they are when read, so VerifyLog follows reloads."""

    def __init__(self, checkpointer: Checkpointer) -> None:
        self._checkpointer = checkpointer

    def __len__(self) -> int:
        return len(self._checkpointer.witnesses)

    @overload
    def __getitem__(self, index: int) -> notes.Verifier: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[notes.Verifier]: ...

    def __getitem__(self, index: int | slice) -> notes.Verifier | Sequence[notes.Verifier]:
        return list(self._checkpointer.witnesses.values())[index]

    def __iter__(self) -> Iterator[notes.Verifier]:
        # One snapshot per iteration, so a reload mid-way cannot mix two sets.
        return iter(list(self._checkpointer.witnesses.values()))


def servicers_for(parts: NodeParts) -> Servicers:
    """The real servicers over ``parts``; what they cannot serve yet answers UNIMPLEMENTED."""
    subjects = parts.subjects
    resolver = (
        functools.partial(subjects.node_pseudonym, activity=INZAGE_ACTIVITY)
        if subjects is not None
        else None
    )
    keys = Keys(
        log=parts.log_key,
        witnesses=_WitnessesInForce(parts.checkpointer),
        quorum=parts.config.audit.quorum,
    )
    return Servicers(
        partner=PartnerService(parts),
        case=CaseService(parts),
        federation=FederationService(parts),
        audit=AuditService(
            parts.audit,
            parts.checkpointer,
            keys,
            resolver,
            subjects.own.global_public_key if subjects is not None else None,
        ),
    )


@dataclass
class Node:
    """A running node: the server and its background loops."""

    parts: NodeParts
    server: NodeServer
    admin: AdminPort | None = None
    """``/metrics``, ``/healthz`` and ``/readyz``; None without ``[admin] listen``."""
    process_lock: ProcessLock | None = None
    """The SQLite file's lock, held while the node runs; None on PostgreSQL."""
    leadership: Leadership | None = None
    """Whether this replica does the node's duties; made by :meth:`start`."""
    console: ConsoleServer | None = None
    """The officers' web console; None without ``[console] listen``."""
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    @property
    def address(self) -> str:
        """Where the node listens (with the port actually bound)."""
        return self.server.address

    async def start(self) -> None:
        """Requeue open deliveries, withdraw cases the audit log does not show, serve, and
        start checkpointing, witnessing, policy reload and purging."""
        if self.admin is not None:
            self.admin.start()
        await self.parts.tasks.recover()
        # Replicas serving already may be mid-referral: a case a moment old is theirs to record.
        others = await asyncio.to_thread(others_lead, self.parts.engine)
        await reconcile_referrals(self.parts, older_than=REPLICA_GRACE if others else timedelta(0))
        await self.server.start()
        if self.console is not None:
            await self.console.start()
        if self.admin is not None:
            self.admin.serving.set()
        if self.parts.policy is not None:
            # Every bundle enforced is kept, so the FG can compare it with the one before.
            await asyncio.to_thread(keep_bundle, self.parts)
            self.parts.policy.on_reload = functools.partial(keep_bundle, self.parts)
            self.parts.policy.start()
        self.leadership = Leadership(self.parts.engine)
        self._tasks = start_duties(self.parts, self.leadership, self._stop)

    async def stop(self, grace: float | None = 5.0) -> None:
        """Stop serving, finish the loops, and close the audit writer."""
        self._stop.set()
        if self.admin is not None:
            self.admin.serving.clear()
        if self.console is not None:
            await self.console.stop()
        await self.server.stop(grace)
        await self.parts.tasks.close()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.parts.policy is not None:
            self.parts.policy.stop()
        if self.parts.peers is not None:
            await self.parts.peers.close()
        if self.parts.subjects is not None:
            await self.parts.subjects.chain.close()
        self.parts.audit.close()
        if self.admin is not None:
            self.admin.stop()
        if self.process_lock is not None:
            self.process_lock.release()

    async def wait(self) -> None:
        """Return when the server has stopped."""
        await self.server.wait()


def open_node(config: NodeConfig) -> Node:
    """Load the parts and build the server (inside the event loop that will run it)."""
    otel.configure(config.tracing, config.node.id)  # before any channel to a peer is made
    process_lock = hold_sqlite(config.database_url)
    try:
        engine = open_database(config)
    except BaseException:
        if process_lock is not None:
            process_lock.release()
        raise
    try:
        parts = load_parts(config, engine)
        server = build_server(config, servicers_for(parts), engine=engine, audit=parts.audit)
    except BaseException:
        engine.dispose()
        if process_lock is not None:
            process_lock.release()
        raise
    admin = AdminPort(parts) if config.admin.listen else None
    console = ConsoleServer(parts, server.revocations) if config.console.listen else None
    return Node(parts, server, admin, process_lock=process_lock, console=console)


__all__ = ["ConfigError", "Node", "NodeParts", "load_parts", "open_node", "servicers_for"]
