"""Node configuration: a TOML file plus environment overrides, checked at start.

The file has one table per section; every key maps onto a field of a typed,
frozen dataclass below. Unknown keys, wrong types and missing files are
errors that name the key, e.g. ``node.toml: tls.ca_file: file not found: /x``.

Environment overrides: ``SCHAKEL_<SECTION>__<KEY>=value`` sets
``<section>.<key>`` (case-insensitive; ``__`` separates levels, a single
``_`` stays part of the name), e.g. ``SCHAKEL_NODE__LISTEN=0.0.0.0:7443`` or
``SCHAKEL_TLS__CRL_FILE=/etc/schakel/crl.pem``. A value is converted to the
field's type: integers, ``true``/``false``, comma-separated lists.

Relative paths are resolved against the config file's directory. A new section
is a dataclass field of :class:`NodeConfig` with a default (older files stay valid).
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from certs.identity import IdentityError, check_slug
from gateway.logging import LEVELS
from gateway.observability.settings import AdminSection, TracingSection
from gateway.tomlconfig import ConfigError, TableLoader, env_overrides
from policy.vocabulary import ORG_TYPES


@dataclass(frozen=True)
class NodeSection:
    """``[node]``: who this node is and where it listens."""

    id: str
    """The node id, as in the node certificate's URI ``schakel://node/<id>``."""
    listen: str = "127.0.0.1:7443"
    """``host:port`` (``[v6addr]:port`` for IPv6); port 0 picks a free port."""
    state_dir: Path = Path("state")
    """Where the node keeps its files (the default SQLite database)."""
    log_level: str = "info"


@dataclass(frozen=True)
class TlsSection:
    """``[tls]``: the federation CA, this node's certificate and (maybe encrypted) key, the CRL."""

    ca_file: Path
    cert_file: Path
    key_file: Path
    key_passphrase_file: Path | None = None
    crl_file: Path | None = None
    """CRL published by ``schakel certs crl``; re-read whenever it changes."""
    max_connection_age_seconds: int = 3600


@dataclass(frozen=True)
class DatabaseSection:
    """``[database]``: SQLAlchemy URL; empty means SQLite in the state dir."""

    url: str = ""


@dataclass(frozen=True)
class PseudonymSection:
    """``[pseudonyms]``: the node's own domain key; the node holds no transcryptor secret.

    The key is assembled from every transcryptor's factor (``schakel node
    enrol`` online, or ``schakel certs pep assemble`` from factor files).
    Without it, or without ``[[transcryptors]]``, the node refuses every call
    that carries a subject.
    """

    domain_key: Path | None = None
    """``schakel-pep-domain/v1`` file for the node's own domain (its node id)."""
    domain_key_passphrase_file: Path | None = None
    """The passphrase the domain key file is sealed with; without it the file is plain."""
    batch_size: int = 1024
    """Most ciphertexts the node sends a transcryptor in one call; larger batches are split."""
    timeout_seconds: int = 10
    """How long one call to one transcryptor may take."""


@dataclass(frozen=True)
class TranscryptorEndpoint:
    """One ``[[transcryptors]]`` entry: a link of the chain, called in the order listed."""

    id: str
    address: str
    """``host:port`` of its gRPC endpoint."""
    identity: str
    """Its certificate identity, ``schakel://transcryptor/<id>``; the channel is pinned to it."""
    log_key: str = ""
    """Its checkpoint vkey (C2SP, named after its id): if set, this node witnesses its log."""


@dataclass(frozen=True)
class PolicySection:
    """``[policy]``: the signed policy bundle; without one every request is denied."""

    bundle: Path | None = None
    """The bundle YAML; its signature is ``<bundle>.sig`` beside it."""
    public_key: Path | None = None
    """The policy key (``.pub`` from ``schakel policy keygen``) the signature must verify with."""
    reload_seconds: int = 2
    """How often the bundle file is checked for a new signed version."""


@dataclass(frozen=True)
class AuditSection:
    """``[audit]``: checkpoint signing and witnessing of the node's audit log."""

    signing_key: Path | None = None
    """Ed25519 PEM key that signs checkpoints (note key name = node id); generated if absent."""
    signing_key_passphrase_file: Path | None = None
    signing_key_pkcs11: str = ""
    """Instead of ``signing_key``: the PKCS#11 URI of an Ed25519 key kept in an HSM."""
    witness_key: Path | None = None
    """Ed25519 PEM key this node cosigns peers' checkpoints with; generated if absent."""
    witness_key_passphrase_file: Path | None = None
    checkpoint_every_records: int = 1000
    checkpoint_every_seconds: int = 60
    quorum: int = 0
    """Cosignatures from witnesses a checkpoint needs to count as final: the peers with a
    ``witness_key`` in the ``[federation]`` directory, or else the ``[[peers]]``."""
    retention_days: int = 3650
    """Days an audit record body is kept before erasure (its leaf hash stays)."""


@dataclass(frozen=True)
class CasesSection:
    """``[cases]``: the case registry's fact vault and contact handle."""

    vault_key: Path | None = None
    """32-byte AES-256-GCM key file for facts at rest; generated (0600) if absent."""
    contact_handle: str = ""
    """The procesregisseur function mailbox given on a federated hit."""
    retention_days: int = 365
    """Days after closure before facts and pseudonym links of a case are purged."""


@dataclass(frozen=True)
class FederationSection:
    """``[federation]``: the signed directory of peer nodes and how they are called."""

    directory: Path | None = None
    """The directory YAML; its signature is ``<directory>.sig`` beside it."""
    public_key: Path | None = None
    """The federation directory key (``.pub``) the signature must verify with."""
    reload_seconds: int = 10
    """How often the directory file is checked for a new signed version."""
    concurrency: int = 32
    """How many calls to peers one fan-out keeps in flight at once."""


@dataclass(frozen=True)
class PeerSection:
    """One ``[[peers]]`` entry: a peer node that witnesses this node's checkpoints.

    Only without a ``[federation]`` directory: with one, the directory lists
    the peers and their keys, and ``[[peers]]`` is ignored (a warning says so).
    """

    id: str
    address: str
    """``host:port`` of the peer's gRPC endpoint."""
    log_key: str
    """The peer's checkpoint verifier key (C2SP vkey) for witnessing its log."""
    witness_key: str
    """The peer's cosignature verifier key (C2SP vkey) for its cosignatures on ours."""


@dataclass(frozen=True)
class PartnerOrgSection:
    """One ``[[partners]]`` entry: a local partner organisation asked in hit/no-hit rounds."""

    id: str
    """The organisation id, as in its certificate (``schakel://partner/<node>/<id>``)."""
    org_type: str
    """Its organisation type (politie, ggz, gemeente, ...), as policy knows it."""


@dataclass(frozen=True)
class ConsoleSection:
    """``[console]``: the officers' web console, on its own HTTPS port behind the node's mTLS."""

    listen: str = ""
    """``host:port`` of the console, e.g. ``127.0.0.1:7480``; empty (the default): off."""


@dataclass(frozen=True)
class NodeConfig:
    """The whole, validated configuration of one node."""

    node: NodeSection
    tls: TlsSection
    database: DatabaseSection = field(default_factory=DatabaseSection)
    pseudonyms: PseudonymSection = field(default_factory=PseudonymSection)
    policy: PolicySection = field(default_factory=PolicySection)
    audit: AuditSection = field(default_factory=AuditSection)
    cases: CasesSection = field(default_factory=CasesSection)
    federation: FederationSection = field(default_factory=FederationSection)
    peers: list[PeerSection] = field(default_factory=list)
    partners: list[PartnerOrgSection] = field(default_factory=list)
    admin: AdminSection = field(default_factory=AdminSection)
    tracing: TracingSection = field(default_factory=TracingSection)
    console: ConsoleSection = field(default_factory=ConsoleSection)
    transcryptors: list[TranscryptorEndpoint] = field(default_factory=list)
    source: str = field(default="", metadata={"internal": True})
    """Where the configuration came from, for error messages; not a key."""

    @property
    def database_url(self) -> str:
        """The database URL, defaulting to ``<state_dir>/node.db`` on SQLite."""
        return self.database.url or f"sqlite:///{self.node.state_dir / 'node.db'}"

    @property
    def listen_host_port(self) -> tuple[str, int]:
        """``node.listen`` split into host and port."""
        return split_listen(self.node.listen)


def split_listen(value: str) -> tuple[str, int]:
    """Split ``host:port`` or ``[v6]:port``; raise ValueError saying what is wrong."""
    host, sep, port = value.rpartition(":")
    if not sep or not host:
        raise ValueError(f"{value!r} is not host:port")
    if not port.isdigit() or int(port) > 65535:
        raise ValueError(f"port {port!r} is not a number from 0 to 65535")
    return host.strip("[]"), int(port)


def load_config(
    path: Path, environ: Mapping[str, str] | None = None, *, enrolling: bool = False
) -> NodeConfig:
    """Read, override from ``environ`` (default ``os.environ``) and validate a node config.

    ``enrolling``: the domain key file is what ``schakel node enrol`` is about
    to write, so it need not exist yet.
    """
    source = str(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(f"{source}: config file not found") from exc
    except OSError as exc:
        raise ConfigError(f"{source}: cannot read config file: {exc.strerror}") from exc
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{source}: not valid TOML: {exc}") from exc
    overrides = env_overrides(os.environ if environ is None else environ)
    loader = TableLoader(source, path.resolve().parent, overrides)
    config: NodeConfig = dataclasses.replace(loader.build(NodeConfig, raw, ""), source=source)
    loader.check_unused_overrides()
    _validate(config, source, loader.origins, enrolling=enrolling)
    return config


def config_error(config: NodeConfig, key: str, message: str) -> ConfigError:
    """An error about ``key`` of ``config``, naming where the config came from."""
    return ConfigError(f"{config.source}: {key}: {message}")


def _validate(
    config: NodeConfig, source: str, origins: Mapping[str, str], *, enrolling: bool = False
) -> None:
    def fail(key: str, message: str) -> ConfigError:
        if key in origins:
            return ConfigError(f"{origins[key]} (environment override of {key}): {message}")
        return ConfigError(f"{source}: {key}: {message}")

    try:
        check_slug(config.node.id, "node id")
    except IdentityError as exc:
        raise fail("node.id", str(exc)) from exc
    listens = {
        "node.listen": config.node.listen,
        "admin.listen": config.admin.listen,
        "console.listen": config.console.listen,
    }
    for key, listen in listens.items():
        try:
            if listen or key == "node.listen":  # an empty admin or console listen: port off
                split_listen(listen)
        except ValueError as exc:
            raise fail(key, str(exc)) from exc
    for key, message in config.tracing.problems():
        raise fail(f"tracing.{key}", message)
    if config.node.log_level not in LEVELS:
        raise fail("node.log_level", f"{config.node.log_level!r} is not one of {sorted(LEVELS)}")
    files = {
        "tls.ca_file": config.tls.ca_file,
        "tls.cert_file": config.tls.cert_file,
        "tls.key_file": config.tls.key_file,
        "tls.crl_file": config.tls.crl_file,
        "pseudonyms.domain_key": None if enrolling else config.pseudonyms.domain_key,
        "pseudonyms.domain_key_passphrase_file": config.pseudonyms.domain_key_passphrase_file,
        "policy.bundle": config.policy.bundle,
        "policy.public_key": config.policy.public_key,
        "federation.directory": config.federation.directory,
        "federation.public_key": config.federation.public_key,
    }
    for key, path in files.items():
        if path is not None and not path.is_file():
            raise fail(key, f"file not found: {path}")
    if (config.policy.bundle is None) != (config.policy.public_key is None):
        raise fail("policy.public_key", "policy.bundle and policy.public_key go together")
    if (config.federation.directory is None) != (config.federation.public_key is None):
        raise fail(
            "federation.public_key", "federation.directory and federation.public_key go together"
        )
    positive = {
        "policy.reload_seconds": config.policy.reload_seconds,
        "audit.checkpoint_every_records": config.audit.checkpoint_every_records,
        "audit.checkpoint_every_seconds": config.audit.checkpoint_every_seconds,
        "audit.retention_days": config.audit.retention_days,
        "cases.retention_days": config.cases.retention_days,
        "federation.reload_seconds": config.federation.reload_seconds,
        "federation.concurrency": config.federation.concurrency,
        "tls.max_connection_age_seconds": config.tls.max_connection_age_seconds,
        "pseudonyms.batch_size": config.pseudonyms.batch_size,
        "pseudonyms.timeout_seconds": config.pseudonyms.timeout_seconds,
    }
    for key, number in positive.items():
        if number < 1:
            raise fail(key, f"must be at least 1, not {number}")
    if config.audit.quorum < 0:
        raise fail("audit.quorum", f"must be at least 0, not {config.audit.quorum}")
    if config.federation.directory is None and config.audit.quorum > len(config.peers):
        # With a directory its witnesses count; the node checks when it loads it.
        raise fail("audit.quorum", f"must be from 0 to the number of peers ({len(config.peers)})")
    for i, peer in enumerate(config.peers):
        try:
            check_slug(peer.id, "peer id")
            split_listen(peer.address)
        except (IdentityError, ValueError) as exc:
            raise fail(f"peers[{i}]", str(exc)) from exc
    seen: set[str] = set()
    for i, partner in enumerate(config.partners):
        try:
            check_slug(partner.id, "partner id")
        except IdentityError as exc:
            raise fail(f"partners[{i}].id", str(exc)) from exc
        if partner.id in seen:
            raise fail(f"partners[{i}].id", f"{partner.id!r} is listed twice")
        seen.add(partner.id)
        if partner.org_type not in ORG_TYPES:
            raise fail(
                f"partners[{i}].org_type",
                f"{partner.org_type!r} is not one of {sorted(ORG_TYPES)}",
            )
    _validate_transcryptors(config, fail)
    url = config.database.url
    if url and not url.startswith(("sqlite://", "postgresql")):
        raise fail("database.url", "must be a sqlite:// or postgresql+psycopg:// URL")


def _validate_transcryptors(config: NodeConfig, fail: Callable[[str, str], ConfigError]) -> None:
    if bool(config.transcryptors) != (config.pseudonyms.domain_key is not None):
        raise fail("transcryptors", "[[transcryptors]] and pseudonyms.domain_key go together")
    seen: set[str] = set()
    for i, t in enumerate(config.transcryptors):
        try:
            check_slug(t.id, "transcryptor id")
            split_listen(t.address)
        except (IdentityError, ValueError) as exc:
            raise fail(f"transcryptors[{i}]", str(exc)) from exc
        if t.identity != f"schakel://transcryptor/{t.id}":
            raise fail(f"transcryptors[{i}].identity", f"must be schakel://transcryptor/{t.id}")
        if t.id in seen:
            raise fail(f"transcryptors[{i}].id", f"{t.id!r} is listed twice")
        seen.add(t.id)


__all__ = [
    "AuditSection",
    "CasesSection",
    "ConfigError",
    "ConsoleSection",
    "DatabaseSection",
    "FederationSection",
    "NodeConfig",
    "NodeSection",
    "PartnerOrgSection",
    "PeerSection",
    "PolicySection",
    "PseudonymSection",
    "TlsSection",
    "TranscryptorEndpoint",
    "config_error",
    "load_config",
    "split_listen",
]
