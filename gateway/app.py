"""A whole node: configuration in, a serving gRPC server with its background work out.

:func:`open_node` loads every piece the config names (pseudonym keys, the
signed policy bundle, the audit log with its checkpoint and witness keys,
the case registry), builds the servicers on them and the mTLS server around
them. :class:`Node` then runs the server plus the background loops:
checkpoint signing, asking peers to witness checkpoints, policy hot reload,
and the retention purge of cases, audit bodies and expired partner tasks.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, cast, overload

import grpc
from sqlalchemy import Engine

from gateway.audit import notes
from gateway.audit.checkpoint import Checkpointer
from gateway.audit.inzage import node_resolver
from gateway.audit.store import AuditLog
from gateway.audit.verify import Keys
from gateway.audit.witness import WITNESS_SIZE_KEY, Witness
from gateway.cases import CaseRegistry, FactVault
from gateway.config import ConfigError, NodeConfig, config_error
from gateway.federation import Peer, PeerClient, peer_client_for
from gateway.federation.witnesses import WitnessKeyError, WitnessKeys, WitnessRoster, witness_keys
from gateway.flows.reconcile import reconcile_referrals
from gateway.logging import get_logger
from gateway.parts import NodeParts
from gateway.rpc.audit import AuditService
from gateway.rpc.case import CaseService
from gateway.rpc.federation import FederationService
from gateway.rpc.partner import PartnerService
from gateway.rpc.server import NodeServer, Servicers, build_server, open_database
from gateway.subjects import NodeSubjects
from gateway.tasks.broker import TaskBroker
from policy.model import PolicyError
from policy.pseudonyms import DomainKey, KeyFileError, TranscryptorKeys
from policy.store import PolicyStore

if TYPE_CHECKING:
    from schakel.v1.federation_pb2_grpc import FederationServiceAsyncStub

log = get_logger("node")

PURGE_INTERVAL_SECONDS = 60.0
"""Often, so that each retention run finds little to do and finishes in short transactions."""
WITNESS_INTERVAL_SECONDS = 2.0
WITNESS_DEADLINE_SECONDS = 5.0


def _write_secret(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)


def load_signer(path: Path, name: str, sig_type: int) -> notes.Signer:
    """Load an Ed25519 note key, creating it (0600) on first start like an SSH host key."""
    if not path.exists():
        signer = notes.Signer.generate(name, sig_type)
        _write_secret(path, signer.pem())
        log.info("audit_key_created", path=str(path), vkey=signer.verifier().vkey())
        return signer
    return notes.Signer.load(path, name, sig_type)


def _state_path(config: NodeConfig, configured: Path | None, default: str) -> Path:
    return configured if configured is not None else config.node.state_dir / default


def _load_subjects(config: NodeConfig) -> NodeSubjects | None:
    section = config.pseudonyms
    if section.transcryptor_keys is None and section.domain_key is None:
        return None
    if section.transcryptor_keys is None or section.domain_key is None:
        raise config_error(
            config, "pseudonyms", "transcryptor_keys and domain_key must both be set"
        )
    try:
        keys = TranscryptorKeys.load(section.transcryptor_keys)
    except KeyFileError as exc:
        raise config_error(config, "pseudonyms.transcryptor_keys", str(exc)) from exc
    try:
        own = DomainKey.load(section.domain_key)
    except KeyFileError as exc:
        raise config_error(config, "pseudonyms.domain_key", str(exc)) from exc
    if own.domain != config.node.id:
        raise config_error(
            config,
            "pseudonyms.domain_key",
            f"is the key of domain {own.domain!r}, not of this node {config.node.id!r}",
        )
    try:
        return NodeSubjects.load(keys, own)
    except ValueError as exc:
        raise config_error(config, "pseudonyms.domain_key", str(exc)) from exc


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
        keys = witness_keys(listed)
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
    node_id = config.node.id
    try:
        signer = load_signer(
            _state_path(config, config.audit.signing_key, "audit-log.key"), node_id, notes.ED25519
        )
        cosigner = load_signer(
            _state_path(config, config.audit.witness_key, "audit-witness.key"),
            node_id,
            notes.COSIGNATURE_V1,
        )
    except (notes.NoteError, OSError, ValueError) as exc:
        raise config_error(config, "audit", f"cannot load the audit keys: {exc}") from exc
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
    audit = AuditLog(engine)
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
        WitnessRoster(peers.peers, checkpointer, witness, quorum=config.audit.quorum)
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
        policy=policy,
        subjects=subjects,
        log_key=signer.verifier(),
        witness_verifier=cosigner.verifier(),
        tasks=TaskBroker(engine, vault),
        peers=peers,
        roster=roster,
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
    resolver = (
        node_resolver(parts.subjects.transcryptor, parts.subjects.own)
        if parts.subjects is not None
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
        audit=AuditService(parts.audit, parts.checkpointer, keys, resolver),
    )


@dataclass
class Node:
    """A running node: the server and its background loops."""

    parts: NodeParts
    server: NodeServer
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    @property
    def address(self) -> str:
        """Where the node listens (with the port actually bound)."""
        return self.server.address

    async def start(self) -> None:
        """Requeue open deliveries, withdraw cases the audit log does not show, serve, and
        start checkpointing, witnessing, policy reload and purging."""
        await self.parts.tasks.recover()
        await reconcile_referrals(self.parts)
        await self.server.start()
        if self.parts.policy is not None:
            self.parts.policy.start()
        self._tasks = [
            asyncio.create_task(self.parts.checkpointer.run(self._stop), name="checkpoints"),
            asyncio.create_task(self._witness_loop(), name="witnessing"),
            asyncio.create_task(self._purge_loop(), name="retention"),
        ]

    async def stop(self, grace: float | None = 5.0) -> None:
        """Stop serving, finish the loops, and close the audit writer."""
        self._stop.set()
        await self.server.stop(grace)
        await self.parts.tasks.close()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self.parts.policy is not None:
            self.parts.policy.stop()
        if self.parts.peers is not None:
            await self.parts.peers.close()
        self.parts.audit.close()

    async def wait(self) -> None:
        """Return when the server has stopped."""
        await self.server.wait()

    async def _purge_loop(self) -> None:
        while not self._stop.is_set():
            try:
                purged = await asyncio.to_thread(self.parts.registry.purge_expired)
                erased = await asyncio.to_thread(self.parts.audit.erase_expired)
                tasks = await self.parts.tasks.purge_expired()
                if purged or erased or tasks:
                    log.info(
                        "retention_purge",
                        cases=len(purged),
                        audit_bodies=erased,
                        partner_tasks=tasks,
                    )
            except Exception as exc:  # a failed purge is retried at the next interval
                log.error("retention_purge_failed", error=type(exc).__name__)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), PURGE_INTERVAL_SECONDS)

    async def _witness_loop(self) -> None:
        """Each round: take up key changes from the peer list, then ask every witness."""
        roster, peers = self.parts.roster, self.parts.peers
        if roster is None or peers is None:
            return
        while not self._stop.is_set():
            try:
                keys = await asyncio.to_thread(roster.refresh)
                if keys.witnesses:
                    await peers.fan_out(
                        "AddCheckpoint",
                        self._ask_witness,
                        deadline=WITNESS_DEADLINE_SECONDS,
                        only=list(keys.witnesses),
                        idempotent=False,
                    )
            except Exception as exc:  # a failed round is retried at the next interval
                log.error("witness_round_failed", error=type(exc).__name__)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), WITNESS_INTERVAL_SECONDS)

    async def _ask_witness(
        self, peer: Peer, stub: FederationServiceAsyncStub, timeout: float
    ) -> None:
        """Send the newest checkpoint to ``peer`` if it has not cosigned it yet."""
        checkpointer = self.parts.checkpointer
        latest = await asyncio.to_thread(checkpointer.latest)
        if latest is None:
            return
        old_size = await asyncio.to_thread(checkpointer.last_cosigned_size, peer.node_id)
        if old_size >= latest.size:
            return
        for _attempt in range(2):
            request = await asyncio.to_thread(checkpointer.witness_request, latest, old_size)
            try:
                reply = await stub.AddCheckpoint(request, timeout=timeout)
            except grpc.aio.AioRpcError as exc:
                held = _held_size(exc)
                if held is not None and held != old_size:
                    # The witness saw a size we never got its cosignature for
                    # (e.g. the reply was lost): prove consistency from there.
                    old_size = held
                    continue
                log.warning(
                    "witness_unavailable",
                    peer=peer.node_id,
                    code=exc.code().name,
                    size=latest.size,
                )
                return
            try:
                count = await asyncio.to_thread(
                    checkpointer.add_cosignature, latest.size, reply.cosignature
                )
            except notes.NoteError as exc:
                log.error("witness_cosignature_refused", peer=peer.node_id, reason=str(exc))
                return
            log.info("checkpoint_cosigned", peer=peer.node_id, size=latest.size, cosignatures=count)
            return


def _held_size(error: grpc.aio.AioRpcError) -> int | None:
    """The witness's size from a FAILED_PRECONDITION answer, if it is one."""
    if error.code() is not grpc.StatusCode.FAILED_PRECONDITION:
        return None
    # grpc-stubs types trailing metadata as opaque items; at run time they are pairs.
    pairs = cast("Iterable[tuple[str, str | bytes]]", error.trailing_metadata() or ())
    for key, value in pairs:
        if key == WITNESS_SIZE_KEY:
            text = value.decode() if isinstance(value, bytes) else value
            return int(text) if text.isdigit() else None
    return None


def open_node(config: NodeConfig) -> Node:
    """Load the parts and build the server (inside the event loop that will run it)."""
    engine = open_database(config)
    try:
        parts = load_parts(config, engine)
        server = build_server(config, servicers_for(parts), engine=engine, audit=parts.audit)
    except BaseException:
        engine.dispose()
        raise
    return Node(parts, server)


__all__ = ["ConfigError", "Node", "NodeParts", "load_parts", "open_node", "servicers_for"]
