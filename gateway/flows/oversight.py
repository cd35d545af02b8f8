"""What the FG reads: the audit log filtered, one record with its proof, the log's state.

A line of the browsed list names no subject, so browsing is not audited.
Opening a record shows its subject's pseudonym: that is processing about
the person, recorded (:data:`OPEN_METHOD`, under :data:`OVERSIGHT_ACTIVITY`)
with the subject before the record is shown, so it appears in the
person's inzage. The inclusion proof of an opened record is checked here,
against the newest checkpoint whose signature the node's pinned log key
verifies, exactly as an officer's offline tool would.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from schakel.v1 import audit_pb2

from certs.identity import Identity
from gateway.audit import merkle, notes, query, verify
from gateway.audit.verify import Keys, Report
from gateway.errors import InvalidInputError, NotFoundError
from gateway.flows.crossing import Crossing, record

if TYPE_CHECKING:
    from gateway.parts import NodeParts

OVERSIGHT_ACTIVITY = "schakel.toezicht"
"""The processing activity of the FG's oversight of the audit log."""
OPEN_METHOD = "schakel.console/OpenAuditRecord"
BROWSE_LIMIT = 200
"""The most records one page of the browser shows."""


@dataclass(frozen=True)
class Browse:
    """The browser's filters: the indexed ones of :class:`~gateway.audit.query.Filter`, then
    requester, provider and rule on the decoded records."""

    where: query.Filter
    requester: str = ""
    provider: str = ""
    rule: str = ""
    limit: int = BROWSE_LIMIT

    def admits(self, entry: audit_pb2.AuditEntry) -> bool:
        """True when ``entry`` passes the filters on the decoded record."""
        r = entry.record
        if entry.erased:
            # An erased record keeps only its hash: no requester, provider or rule to match.
            return not (self.requester or self.provider or self.rule)
        return (
            (not self.requester or self.requester in r.requester)
            and (not self.provider or self.provider in r.provider)
            and (not self.rule or self.rule in r.decision.rule_ids)
        )


async def browse(parts: NodeParts, what: Browse) -> list[audit_pb2.AuditEntry]:
    """The newest records ``what`` admits, at most ``what.limit``, newest first.

    Requester, provider and rule are not indexed: they are looked for among
    the newest :data:`~gateway.audit.query.MAX_LIMIT` records the indexed
    filters admit.
    """
    unindexed = what.requester or what.provider or what.rule
    # Without an unindexed filter the database's limit is the page's.
    limit = what.where.limit if unindexed else min(what.where.limit, what.limit)
    try:
        where = replace(what.where, newest_first=True, limit=limit).checked()
    except ValueError as exc:
        raise InvalidInputError(str(exc)) from None
    entries = await asyncio.to_thread(query.query, parts.audit.engine, where)
    return [e for e in entries if what.admits(e)][: what.limit]


@dataclass(frozen=True)
class ProvenRecord:
    """One record, the checkpoint its proof is against, and whether the proof holds."""

    entry: audit_pb2.AuditEntry
    checkpoint: notes.Checkpoint | None
    proof: list[bytes] = field(default_factory=list)
    verified: bool = False
    problem: str = ""
    """Why there is no verified proof (not yet checkpointed, or what failed)."""


def keys_of(parts: NodeParts) -> Keys:
    """The keys an officer pins for this node's log, as they are now."""
    return Keys(
        log=parts.log_key,
        witnesses=list(parts.checkpointer.witnesses.values()),
        quorum=parts.config.audit.quorum,
    )


def _prove(parts: NodeParts, entry: audit_pb2.AuditEntry) -> ProvenRecord:
    latest = parts.checkpointer.latest()
    if latest is None:
        return ProvenRecord(entry, None, problem="er is nog geen checkpoint getekend")
    checkpoint, _ = notes.open_checkpoint(latest.note, parts.log_key)
    if entry.index >= checkpoint.size:
        return ProvenRecord(
            entry, checkpoint, problem="dit record is nieuwer dan het laatste checkpoint"
        )
    proof = parts.audit.inclusion_proof(entry.index, checkpoint.size)
    try:
        merkle.verify_inclusion(
            entry.leaf_hash, entry.index, checkpoint.size, proof, checkpoint.root
        )
    except merkle.ProofError as exc:
        return ProvenRecord(entry, checkpoint, proof, problem=str(exc))
    if entry.leaf_data and merkle.leaf_hash(entry.leaf_data) != entry.leaf_hash:
        return ProvenRecord(entry, checkpoint, proof, problem="de inhoud past niet bij de hash")
    return ProvenRecord(entry, checkpoint, proof, verified=True)


async def open_record(parts: NodeParts, caller: Identity, index: int) -> ProvenRecord:
    """Record ``index`` with its verified inclusion proof; the look-up is audited first."""
    if index < 0:
        raise InvalidInputError(f"index must be 0 or more, not {index}")
    entry = await asyncio.to_thread(query.one, parts.audit.engine, index)
    if entry is None:
        raise NotFoundError(f"the audit log has no record {index}")
    crossing = Crossing(
        name=OPEN_METHOD,
        caller=caller,
        activity=OVERSIGHT_ACTIVITY,
        subject=entry.record.data_subject_id,
    )
    await record(parts.audit, crossing)
    return await asyncio.to_thread(_prove, parts, entry)


@dataclass(frozen=True)
class WitnessState:
    """One configured witness and what it cosigned."""

    name: str
    cosigned_latest: bool
    last_cosigned_size: int


@dataclass(frozen=True)
class LogState:
    """The newest checkpoint, its age and cosignatures, per configured witness."""

    size: int
    checkpoint_size: int
    checkpoint_signed: datetime | None
    final: bool
    quorum: int
    witnesses: list[WitnessState]


def _log_state(parts: NodeParts) -> LogState:
    checkpointer = parts.checkpointer
    latest = checkpointer.latest()
    cosigners = set()
    if latest is not None:
        cosigners = {notes.parse_signature_line(line).name for line in latest.cosignatures}
    witnesses = [
        WitnessState(name, name in cosigners, checkpointer.last_cosigned_size(name))
        for name in sorted(checkpointer.witnesses)
    ]
    return LogState(
        size=parts.audit.head().size,
        checkpoint_size=latest.size if latest is not None else 0,
        checkpoint_signed=(
            datetime.fromtimestamp(latest.signed_us / 1e6, UTC) if latest is not None else None
        ),
        final=latest is not None and checkpointer.is_final(latest),
        quorum=checkpointer.quorum,
        witnesses=witnesses,
    )


async def log_state(parts: NodeParts) -> LogState:
    """The log's size, newest checkpoint and its cosignatures."""
    return await asyncio.to_thread(_log_state, parts)


async def verify_log(parts: NodeParts) -> Report:
    """Verify the whole log with the keys the node pins (as ``schakel audit verify`` does)."""
    return await asyncio.to_thread(verify.verify_database, parts.audit.engine, keys_of(parts))


__all__ = [
    "OPEN_METHOD",
    "OVERSIGHT_ACTIVITY",
    "Browse",
    "LogState",
    "ProvenRecord",
    "WitnessState",
    "browse",
    "log_state",
    "open_record",
    "verify_log",
]
