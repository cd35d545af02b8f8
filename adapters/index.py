"""The partner's pseudonym index: its domain pseudonym -> its local record key.

The index lives in the partner's own database and holds no identifier: it is
built by encrypting each local identifier under the federation key Y, letting
the node transcrypt the batch to the partner's domain (PartnerService.
Pseudonymise, which never decrypts) and decrypting each answer with the
partner's domain key.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field

import sqlalchemy as sa
import structlog
from schakel.v1 import common_pb2

from adapters.sdk import DomainKey, SubjectRow, decrypt_subject, encrypt_subject

log = structlog.get_logger(__name__)

MAX_BATCH = 1000
"""PartnerService.Pseudonymise takes at most this many subjects per call."""
MAX_KEY_LENGTH = 255
_PSEUDONYM_HEX = re.compile(r"[0-9a-f]{64}")

Pseudonymiser = Callable[
    [Sequence[common_pb2.EncryptedPseudonym]], Awaitable[Sequence[common_pb2.EncryptedPseudonym]]
]
"""Transcrypts a batch of subjects under Y to the partner's domain, keeping the order;
in production ``lambda batch: client.pseudonymise(batch, purpose=...)``."""


class PseudonymIndexError(ValueError):
    """The index cannot be built or queried as asked."""


@dataclass
class SyncReport:
    """What one :meth:`PseudonymIndex.sync` changed."""

    added: int = 0
    removed: int = 0
    rejected: dict[str, str] = field(default_factory=dict)
    """Local key -> why its identifier was refused (never the identifier itself)."""


def check_pseudonym_hex(value: str) -> str:
    """Return ``value`` if it is a domain pseudonym in lowercase hex (64 characters)."""
    if not isinstance(value, str) or not _PSEUDONYM_HEX.fullmatch(value):
        raise PseudonymIndexError("a domain pseudonym must be 64 lowercase hex characters")
    return value


class PseudonymIndex:
    """A table ``pseudonym (hex) -> local_key`` in the partner's own database.

    One local record has one pseudonym; one pseudonym may have several local
    records (duplicates in the partner's source), so a look-up gives a tuple.
    """

    def __init__(self, engine: sa.Engine, *, table_name: str = "schakel_pseudonym_index") -> None:
        """Bind the index to ``engine``; call :meth:`create` once before use."""
        self._engine = engine
        self._metadata = sa.MetaData()
        self.table = sa.Table(
            table_name,
            self._metadata,
            sa.Column("local_key", sa.String(MAX_KEY_LENGTH), primary_key=True),
            sa.Column("pseudonym", sa.String(64), nullable=False, index=True),
            sa.Column("indexed_at", sa.DateTime(timezone=True), nullable=False),
        )

    def create(self) -> None:
        """Create the index table when it does not exist yet."""
        self._metadata.create_all(self._engine)

    def lookup(self, pseudonym_hex: str) -> tuple[str, ...]:
        """The local keys of a domain pseudonym; empty when unknown."""
        check_pseudonym_hex(pseudonym_hex)
        query = (
            sa.select(self.table.c.local_key)
            .where(self.table.c.pseudonym == pseudonym_hex)
            .order_by(self.table.c.local_key)
        )
        with self._engine.connect() as conn:
            return tuple(conn.scalars(query))

    def count(self) -> int:
        """How many local records are indexed."""
        with self._engine.connect() as conn:
            return int(conn.scalar(sa.select(sa.func.count()).select_from(self.table)) or 0)

    def _indexed_keys(self) -> set[str]:
        with self._engine.connect() as conn:
            return set(conn.scalars(sa.select(self.table.c.local_key)))

    async def sync(
        self,
        rows: Iterable[SubjectRow],
        pseudonymise: Pseudonymiser,
        keys: DomainKey,
        *,
        full: bool = False,
        batch_size: int = MAX_BATCH,
    ) -> SyncReport:
        """Bring the index in line with ``rows``: index new records, drop vanished ones.

        With ``full`` every record is pseudonymised again (after a local
        identifier changed, or a domain key rotation). A row whose identifier
        is invalid (e.g. a BSN failing the elfproef) is reported in
        ``rejected`` by its local key and skipped; the rest is indexed.
        """
        if not 1 <= batch_size <= MAX_BATCH:
            raise PseudonymIndexError(f"batch_size must be 1-{MAX_BATCH}, got {batch_size}")
        report = SyncReport()
        existing = set() if full else self._indexed_keys()
        seen: set[str] = set()
        pending: list[tuple[str, common_pb2.EncryptedPseudonym]] = []
        for row in rows:
            key = str(row.local_key)
            if not key or len(key) > MAX_KEY_LENGTH:
                report.rejected[key[:40]] = f"local key must be 1-{MAX_KEY_LENGTH} characters"
                continue
            if key in seen:
                report.rejected[key] = "local key occurs twice in the source"
                continue
            seen.add(key)
            if key in existing:
                continue
            try:
                pending.append(
                    (key, encrypt_subject(row.id_type, row.id_value, keys.global_public_key))
                )
            except ValueError as exc:
                report.rejected[key] = str(exc)
        stale = (self._indexed_keys() if full else existing) - seen
        with self._engine.begin() as conn:
            if full:
                conn.execute(sa.delete(self.table))
            elif stale:
                for chunk in _chunks(sorted(stale), 500):
                    conn.execute(sa.delete(self.table).where(self.table.c.local_key.in_(chunk)))
        report.removed = len(stale)
        for start in range(0, len(pending), batch_size):
            batch = pending[start : start + batch_size]
            hexes = await _decrypt_batch([ct for _, ct in batch], pseudonymise, keys)
            now = dt.datetime.now(dt.UTC)
            values = [
                {"local_key": key, "pseudonym": hexa, "indexed_at": now}
                for (key, _), hexa in zip(batch, hexes, strict=True)
            ]
            with self._engine.begin() as conn:
                conn.execute(sa.insert(self.table), values)
            report.added += len(values)
        log.info(
            "pseudonym index synced",
            added=report.added,
            removed=report.removed,
            rejected=len(report.rejected),
        )
        return report


async def _decrypt_batch(
    subjects: Sequence[common_pb2.EncryptedPseudonym], pseudonymise: Pseudonymiser, keys: DomainKey
) -> list[str]:
    answers = await pseudonymise(subjects)
    if len(answers) != len(subjects):
        raise PseudonymIndexError(
            f"the node answered {len(answers)} subjects for a batch of {len(subjects)}"
        )
    return [decrypt_subject(answer, keys.secret_key) for answer in answers]


async def pseudonyms_of(
    identifiers: Sequence[tuple[str, str]],
    pseudonymise: Pseudonymiser,
    keys: DomainKey,
    *,
    batch_size: int = MAX_BATCH,
) -> list[str]:
    """The partner's domain pseudonyms (hex) of ``(id_type, value)`` pairs, in order.

    Raises :class:`policy.pseudonyms.PseudonymError` for an invalid identifier;
    validate first when one bad identifier must not stop the rest.
    """
    out: list[str] = []
    for start in range(0, len(identifiers), batch_size):
        batch = identifiers[start : start + batch_size]
        encrypted = [encrypt_subject(t, v, keys.global_public_key) for t, v in batch]
        out.extend(await _decrypt_batch(encrypted, pseudonymise, keys))
    return out


def _chunks(items: Sequence[str], size: int) -> Iterable[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
