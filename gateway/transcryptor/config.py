"""Transcryptor configuration: ``transcryptor.toml``, read like the node's config.

Sections: ``[transcryptor]`` (id, listen address, state directory, worker
threads), ``[tls]`` and ``[database]`` as for a node, ``[policy]`` (the
allow-list file), ``[rate]`` (the per-caller token bucket), ``[audit]``
(checkpoint signing of its own audit log) and ``[[witnesses]]`` (the
federation nodes that cosign its checkpoints). Environment overrides work as
for a node (``SCHAKEL_RATE__BURST=...``).
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from certs.identity import IdentityError, check_slug
from gateway.audit import notes
from gateway.config import DatabaseSection, TlsSection, split_listen
from gateway.federation.directory import peer_key
from gateway.logging import LEVELS
from gateway.tomlconfig import ConfigError, TableLoader, env_overrides


@dataclass(frozen=True)
class TranscryptorSection:
    """``[transcryptor]``: who this transcryptor is, where it listens and keeps its files."""

    id: str
    """As in its certificate's URI ``schakel://transcryptor/<id>``."""
    listen: str = "127.0.0.1:7600"
    state_dir: Path = Path("state")
    """Holds ``share.json`` (its secrets), ``ceremony.json``, the audit database and key."""
    share_passphrase_file: Path | None = None
    """The passphrase ``share.json`` is sealed with; without it the share is plain."""
    log_level: str = "info"
    workers: int = 2
    """Threads that convert a batch; libsodium releases the GIL, so one per core."""
    max_items: int = 4096
    """Most ciphertexts one call may carry."""


@dataclass(frozen=True)
class AllowListSection:
    """``[policy]``: the allow-list of domain pairs, activities and callers."""

    file: Path


@dataclass(frozen=True)
class RateSection:
    """``[rate]``: a token bucket per caller, counted in subjects converted."""

    subjects_per_second: int = 5000
    burst: int = 50000


@dataclass(frozen=True)
class TranscryptorAuditSection:
    """``[audit]``: the checkpoint key of the transcryptor's own audit log, and its quorum."""

    signing_key: Path | None = None
    """Ed25519 PEM key (note key name = the transcryptor id); generated if absent."""
    signing_key_passphrase_file: Path | None = None
    checkpoint_every_records: int = 1000
    checkpoint_every_seconds: int = 60
    retention_days: int = 3650
    quorum: int = 0
    """Cosignatures of ``[[witnesses]]`` that make a checkpoint final."""


@dataclass(frozen=True)
class WitnessEndpoint:
    """One ``[[witnesses]]`` entry: a federation node asked to cosign the log's checkpoints."""

    id: str
    """The node id; the channel is pinned to that node's certificate."""
    address: str
    """``host:port`` of its gRPC endpoint."""
    witness_key: str
    """Its cosignature/v1 vkey (C2SP, named after the node), as the directory lists it."""


@dataclass(frozen=True)
class TranscryptorConfig:
    """The whole, validated configuration of one transcryptor."""

    transcryptor: TranscryptorSection
    tls: TlsSection
    policy: AllowListSection
    rate: RateSection = field(default_factory=RateSection)
    audit: TranscryptorAuditSection = field(default_factory=TranscryptorAuditSection)
    witnesses: list[WitnessEndpoint] = field(default_factory=list)
    database: DatabaseSection = field(default_factory=DatabaseSection)
    source: str = field(default="", metadata={"internal": True})

    @property
    def state_dir(self) -> Path:
        """Where the transcryptor keeps its files."""
        return self.transcryptor.state_dir

    @property
    def share_file(self) -> Path:
        """Its secrets PS_i, RS_i and y_i (mode 0600)."""
        return self.state_dir / "share.json"

    @property
    def ceremony_file(self) -> Path:
        """The finished key ceremony's transcript (public)."""
        return self.state_dir / "ceremony.json"

    @property
    def database_url(self) -> str:
        """The audit database, defaulting to ``<state_dir>/transcryptor.db`` on SQLite."""
        return self.database.url or f"sqlite:///{self.state_dir / 'transcryptor.db'}"

    def error(self, key: str, message: str) -> ConfigError:
        """An error about ``key``, naming the file."""
        return ConfigError(f"{self.source}: {key}: {message}")


def load_transcryptor_config(
    path: Path, environ: Mapping[str, str] | None = None
) -> TranscryptorConfig:
    """Read, override from ``environ`` (default ``os.environ``) and check a transcryptor.toml."""
    source = str(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{source}: cannot read config file: {exc.strerror}") from exc
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{source}: not valid TOML: {exc}") from exc
    overrides = env_overrides(os.environ if environ is None else environ)
    loader = TableLoader(source, path.resolve().parent, overrides)
    built: TranscryptorConfig = loader.build(TranscryptorConfig, raw, "")
    loader.check_unused_overrides()
    config = dataclasses.replace(built, source=source)
    section = config.transcryptor
    try:
        check_slug(section.id, "transcryptor id")
        split_listen(section.listen)
    except (IdentityError, ValueError) as exc:
        raise config.error("transcryptor", str(exc)) from exc
    if section.log_level not in LEVELS:
        raise config.error("transcryptor.log_level", f"{section.log_level!r} is not a log level")
    for key, path_ in {
        "tls.ca_file": config.tls.ca_file,
        "tls.cert_file": config.tls.cert_file,
        "tls.key_file": config.tls.key_file,
        "tls.crl_file": config.tls.crl_file,
        "policy.file": config.policy.file,
        "transcryptor.share_passphrase_file": section.share_passphrase_file,
    }.items():
        if path_ is not None and not path_.is_file():
            raise config.error(key, f"file not found: {path_}")
    positive = {
        "transcryptor.workers": section.workers,
        "transcryptor.max_items": section.max_items,
        "rate.subjects_per_second": config.rate.subjects_per_second,
        "rate.burst": config.rate.burst,
        "audit.checkpoint_every_records": config.audit.checkpoint_every_records,
        "audit.checkpoint_every_seconds": config.audit.checkpoint_every_seconds,
        "audit.retention_days": config.audit.retention_days,
    }
    for key, number in positive.items():
        if number < 1:
            raise config.error(key, f"must be at least 1, not {number}")
    _check_witnesses(config)
    return config


def _check_witnesses(config: TranscryptorConfig) -> None:
    seen: set[str] = set()
    for i, w in enumerate(config.witnesses):
        try:
            check_slug(w.id, "node id")
            split_listen(w.address)
        except (IdentityError, ValueError) as exc:
            raise config.error(f"witnesses[{i}]", str(exc)) from exc
        if w.id in seen or w.id == config.transcryptor.id:
            raise config.error(f"witnesses[{i}].id", f"{w.id!r} is listed twice or is this one")
        seen.add(w.id)
        try:
            peer_key(w.id, w.witness_key, notes.COSIGNATURE_V1)
        except ValueError as exc:
            raise config.error(f"witnesses[{i}].witness_key", str(exc)) from exc
    if not 0 <= config.audit.quorum <= len(config.witnesses):
        raise config.error(
            "audit.quorum", f"must be from 0 to the number of witnesses ({len(config.witnesses)})"
        )
