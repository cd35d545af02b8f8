"""A running transcryptor: its secrets and ceremony, mTLS 1.3 server, allow-list, rate and log.

:func:`open_transcryptor` loads what ``transcryptor.toml`` names and refuses
to start, naming the key, when something does not fit: a certificate that
is not ``schakel://transcryptor/<id>``, a share file of another
transcryptor, a ceremony transcript that does not verify or in which this
transcryptor's step is missing or made with another key share. The server
uses the node's interceptor (authentication, revocation, TLS 1.3, the
refusal audit) and its own audit log, checkpointed like a node's and
cosigned by the federation nodes of ``[[witnesses]]``
(:mod:`gateway.transcryptor.witnessing`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta

import grpc
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from grpc_health.v1 import health_pb2, health_pb2_grpc

# The stubs know only the sync servicer; the aio one lives at health.aio.
from grpc_health.v1.health import aio as health_aio  # type: ignore[attr-defined]
from schakel.v1 import transcryptor_pb2_grpc

from certs import keys as key_files
from certs.identity import IdentityError, PeerKind, identity_from_certificate
from gateway.audit import notes
from gateway.audit.checkpoint import Checkpointer
from gateway.audit.store import AuditLog
from gateway.logging import get_logger
from gateway.rpc.auth import TRANSCRYPTOR_SERVICE, AuthInterceptor
from gateway.storage import make_engine, migrate
from gateway.tls import ClientCertificates, RevocationList, ServerCertificates, TlsFileError
from gateway.tomlconfig import ConfigError
from gateway.transcryptor.allowlist import AllowListError, AllowListFile
from gateway.transcryptor.config import TranscryptorConfig
from gateway.transcryptor.conversion import TranscryptorParts
from gateway.transcryptor.ratelimit import RateLimiter
from gateway.transcryptor.service import TranscryptorService
from gateway.transcryptor.witnessing import Witnessing, witness_verifiers
from policy.pseudonyms import KeyFileError
from policy.pseudonyms.ceremony import Transcript
from policy.pseudonyms.sealing import PassphraseFileError
from policy.pseudonyms.shares import TranscryptorShare

log = get_logger("transcryptor")

CONNECTION_AGE_GRACE_SECONDS = 60


def own_share(config: TranscryptorConfig) -> TranscryptorShare:
    """This transcryptor's share, opened with its passphrase file if it has one.

    ConfigError naming the key when it cannot be read or opened (a wrong
    passphrase, a sealed file altered since), or is another transcryptor's.
    """
    passphrase = config.transcryptor.share_passphrase_file
    try:
        share = TranscryptorShare.load(config.share_file, passphrase)
    except PassphraseFileError as exc:
        raise config.error("transcryptor.share_passphrase_file", str(exc)) from exc
    except KeyFileError as exc:
        raise config.error("transcryptor.state_dir", str(exc)) from exc
    if share.transcryptor != config.transcryptor.id:
        raise config.error(
            "transcryptor.state_dir",
            f"{config.share_file} is the share of {share.transcryptor!r}, "
            f"not of {config.transcryptor.id!r}",
        )
    return share


def load_share(config: TranscryptorConfig) -> tuple[TranscryptorShare, bytes]:
    """The share and the federation key ``Y``; ConfigError when they do not belong together."""
    share = own_share(config)
    try:
        transcript = Transcript.load(config.ceremony_file)
    except KeyFileError as exc:
        raise config.error(
            "transcryptor.state_dir",
            f"{exc}; finish the key ceremony (`schakel transcryptor ceremony`) and put its "
            "transcript there",
        ) from exc
    if share.key_share is not None:
        step = transcript.step_of(share.transcryptor)
        if step is None or step.share != share.public_share:
            raise config.error(
                "transcryptor.state_dir",
                f"{config.ceremony_file} has no step of this transcryptor's key share",
            )
    return share, transcript.global_public_key


def _signer(config: TranscryptorConfig) -> notes.Signer:
    """The checkpoint key, created (0600) on first start like a node's."""
    section, name = config.audit, config.transcryptor.id
    path = section.signing_key or config.state_dir / "audit-log.key"
    passphrase = section.signing_key_passphrase_file
    try:
        if not path.exists():
            signer = notes.Signer.generate(name, notes.ED25519)
            secret = key_files.read_passphrase(passphrase) if passphrase is not None else None
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as out:
                out.write(key_files.private_key_pem(signer.private_key, secret))
            log.info("audit_key_created", path=str(path), vkey=signer.verifier().vkey())
            return signer
        key = key_files.load_private_key(path, passphrase)
    except (key_files.KeyFileError, OSError) as exc:
        raise config.error("audit.signing_key", str(exc)) from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise config.error("audit.signing_key", f"{path}: not an Ed25519 private key")
    return notes.Signer(name, notes.ED25519, key)


def _certificates(config: TranscryptorConfig) -> ServerCertificates:
    tls = config.tls
    try:
        certificates = ServerCertificates(
            tls.ca_file, tls.cert_file, tls.key_file, passphrase_file=tls.key_passphrase_file
        )
    except TlsFileError as exc:
        raise config.error(f"tls.{exc.key}", str(exc)) from exc
    try:
        identity = identity_from_certificate(x509.load_pem_x509_certificate(certificates.cert_pem))
    except (IdentityError, ValueError) as exc:
        raise config.error("tls.cert_file", str(exc)) from exc
    if identity.kind is not PeerKind.TRANSCRYPTOR or identity.org_id != config.transcryptor.id:
        raise config.error(
            "tls.cert_file",
            f"is the certificate of {identity.uri}, "
            f"not of schakel://transcryptor/{config.transcryptor.id}",
        )
    return certificates


def _client_certificates(config: TranscryptorConfig) -> ClientCertificates:
    """Its own certificate as a client, to ask its witnesses; followed across rotations."""
    tls = config.tls
    try:
        return ClientCertificates(
            tls.ca_file, tls.cert_file, tls.key_file, passphrase_file=tls.key_passphrase_file
        )
    except TlsFileError as exc:
        raise config.error(f"tls.{exc.key}", str(exc)) from exc


@dataclass
class TranscryptorServer:
    """A built transcryptor; :meth:`start` it, then :meth:`wait` or :meth:`stop`."""

    config: TranscryptorConfig
    parts: TranscryptorParts
    server: grpc.aio.Server
    port: int
    checkpointer: Checkpointer
    health: health_aio.HealthServicer
    witnessing: Witnessing | None = None
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    @property
    def address(self) -> str:
        """``host:port`` where it listens, with the port actually bound."""
        host = self.config.transcryptor.listen.rpartition(":")[0]
        return f"{host}:{self.port}"

    async def start(self) -> None:
        """Serve, report SERVING, and start checkpointing the audit log."""
        await self.server.start()
        for name in ("", TRANSCRYPTOR_SERVICE):
            await self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        self._tasks = [asyncio.create_task(self.checkpointer.run(self._stop), name="checkpoints")]
        if self.witnessing is not None:
            self._tasks.append(
                asyncio.create_task(self.witnessing.run(self._stop), name="witnessing")
            )
        log.info("transcryptor_started", transcryptor=self.parts.id, listen=self.address)

    async def stop(self, grace: float | None = 5.0) -> None:
        """Stop serving, finish calls in flight for up to ``grace`` seconds, close the log."""
        self._stop.set()
        await self.health.enter_graceful_shutdown()
        await self.server.stop(grace)
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self.parts.pool.shutdown(wait=False)
        self.parts.audit.close()
        self.parts.audit.engine.dispose()
        log.info("transcryptor_stopped", transcryptor=self.parts.id)

    async def wait(self) -> None:
        """Return when the server has stopped."""
        await self.server.wait_for_termination()


def open_transcryptor(config: TranscryptorConfig) -> TranscryptorServer:
    """Load everything ``config`` names and build the server (inside its event loop).

    Raises ConfigError naming the key that is unusable.
    """
    section = config.transcryptor
    share, global_public_key = load_share(config)
    try:
        allow = AllowListFile(config.policy.file)
    except (AllowListError, OSError) as exc:
        raise config.error("policy.file", str(exc)) from exc
    certificates = _certificates(config)
    tls = config.tls
    try:
        revocations = RevocationList(
            tls.crl_file, tls.ca_file, number_file=config.state_dir / "crl-number"
        )
    except (OSError, ValueError) as exc:
        raise config.error("tls.crl_file", str(exc)) from exc
    signer = _signer(config)
    engine = make_engine(config.database_url)
    migrate(engine)
    audit = AuditLog(engine, default_retention=timedelta(days=config.audit.retention_days))
    parts = TranscryptorParts(
        id=section.id,
        share=share,
        global_public_key=global_public_key,
        allow=allow,
        limiter=RateLimiter(float(config.rate.subjects_per_second), config.rate.burst),
        audit=audit,
        pool=ThreadPoolExecutor(section.workers, thread_name_prefix="transcrypt"),
        workers=section.workers,
        max_items=section.max_items,
    )
    checkpointer = Checkpointer(
        audit,
        signer,
        every_records=config.audit.checkpoint_every_records,
        every_seconds=float(config.audit.checkpoint_every_seconds),
        witnesses=witness_verifiers(config.witnesses),
        quorum=config.audit.quorum,
    )
    witnessing = None
    if config.witnesses:
        witnessing = Witnessing(checkpointer, config.witnesses, _client_certificates(config))
    age = tls.max_connection_age_seconds
    server = grpc.aio.server(
        interceptors=[AuthInterceptor("", revocations, audit, max_stream_age=age)],
        options=[
            ("grpc.so_reuseport", 0),
            ("grpc.max_connection_age_ms", age * 1000),
            ("grpc.max_connection_age_grace_ms", CONNECTION_AGE_GRACE_SECONDS * 1000),
            ("grpc.max_receive_message_length", 16 * 1024 * 1024),
        ],
    )
    transcryptor_pb2_grpc.add_TranscryptorServiceServicer_to_server(
        TranscryptorService(parts), server
    )
    health_servicer = health_aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    try:
        port = server.add_secure_port(section.listen, certificates.credentials())
    except RuntimeError as exc:
        engine.dispose()
        raise ConfigError(
            f"{config.source}: transcryptor.listen: cannot listen on {section.listen} "
            "(address in use or not local?)"
        ) from exc
    return TranscryptorServer(
        config, parts, server, port, checkpointer, health_servicer, witnessing
    )
