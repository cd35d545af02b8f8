"""A node's background duties, and which replica does them.

Signing checkpoints, asking peers to witness them, the retention purge
(cases, case links, audit bodies, expired partner tasks) and withdrawing
referrals a killed replica left without their record are done once per
node: by the leader among its replicas (:mod:`gateway.storage.leader`),
which on SQLite is the one process. When the leader dies another replica
takes the duties over within seconds; each duty keeps its state in the
database, so the new leader goes on where the old one stopped.

Every replica keeps its witness keys current with the peer list (a
follower serves VerifyLog and AddCheckpoint too); policy, CRL and directory
reloads poll their files in every process anyway.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta

from gateway.audit.store import to_us
from gateway.federation import cosigning
from gateway.flows.reconcile import reconcile_referrals
from gateway.logging import get_logger
from gateway.parts import NodeParts
from gateway.storage.leader import Leadership

log = get_logger("node")

PURGE_INTERVAL_SECONDS = 60.0
"""Often, so that each retention run finds little to do and finishes in short transactions."""

RECONCILE_INTERVAL_SECONDS = 60.0
"""How often the leader looks for referrals a killed replica left without their record."""

REPLICA_GRACE = timedelta(seconds=60)
"""A referral younger than this may still be between its case and its record on a replica
that is alive, so it is left alone."""


def start_duties(
    parts: NodeParts, leadership: Leadership, stop: asyncio.Event
) -> list[asyncio.Task[None]]:
    """Start the leadership contest and the duties; they end when ``stop`` is set."""
    return [
        asyncio.create_task(leadership.run(stop), name="leadership"),
        asyncio.create_task(leadership.lead(parts.checkpointer.run, stop), name="checkpoints"),
        asyncio.create_task(
            leadership.lead(lambda ended: _witness(parts, ended), stop), name="witnessing"
        ),
        asyncio.create_task(
            leadership.lead(lambda ended: _purge(parts, ended), stop), name="retention"
        ),
        asyncio.create_task(
            leadership.lead(lambda ended: reconcile_loop(parts, ended), stop), name="reconcile"
        ),
        asyncio.create_task(_follow_roster(parts, leadership, stop), name="witness-keys"),
    ]


async def reconcile_loop(
    parts: NodeParts,
    ended: asyncio.Event,
    *,
    interval: float = RECONCILE_INTERVAL_SECONDS,
    grace: timedelta = REPLICA_GRACE,
) -> None:
    """While leading, withdraw the referrals older than ``grace`` that never reached the log.

    A replica killed between a case's commit and its record leaves such a
    case; at start-up only a lone process can look at every case, so while
    other replicas keep serving the leader does it here.
    """
    while not ended.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(ended.wait(), interval)
        if ended.is_set():
            return
        try:
            await reconcile_referrals(parts, older_than=grace)
        except Exception as exc:  # the cases stay; tried again next round
            log.error("reconcile_failed", error=type(exc).__name__)


async def _witness(parts: NodeParts, ended: asyncio.Event) -> None:
    if parts.roster is not None and parts.peers is not None:
        await cosigning.run(parts.checkpointer, parts.roster, parts.peers, ended)


async def _follow_roster(parts: NodeParts, leadership: Leadership, stop: asyncio.Event) -> None:
    """On a follower, take up the peer list's key changes as the leader's witnessing does."""
    roster = parts.roster
    if roster is None:
        return
    while not stop.is_set():
        if not leadership.leading:
            try:
                await asyncio.to_thread(roster.refresh)
            except Exception as exc:  # the keys in force stay; tried again next round
                log.error("witness_keys_refresh_failed", error=type(exc).__name__)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), cosigning.WITNESS_INTERVAL_SECONDS)


async def _purge(parts: NodeParts, ended: asyncio.Event) -> None:
    while not ended.is_set():
        try:
            purged = await asyncio.to_thread(parts.registry.purge_expired)
            links = await asyncio.to_thread(parts.links.purge_expired)
            erased = await _erase_audit_bodies(parts, ended)
            tasks = await parts.tasks.purge_expired()
            if purged or links or erased or tasks:
                log.info(
                    "retention_purge",
                    cases=len(purged),
                    links=len(links),
                    audit_bodies=erased,
                    partner_tasks=tasks,
                )
        except Exception as exc:  # a failed purge is retried at the next interval
            log.error("retention_purge_failed", error=type(exc).__name__)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(ended.wait(), PURGE_INTERVAL_SECONDS)


async def _erase_audit_bodies(parts: NodeParts, ended: asyncio.Event) -> int:
    """Erase the audit bodies due now, one short transaction per batch, until none are left.

    Each batch runs in a worker thread and appends go on between batches,
    so even a large backlog never holds the audit log's write lock for long.
    """
    audit = parts.audit
    cutoff = to_us(audit.clock())
    total = 0
    while not ended.is_set():
        erased, full = await asyncio.to_thread(audit.erase_batch, cutoff)
        total += erased
        if not full:
            break
    return total


__all__ = [
    "PURGE_INTERVAL_SECONDS",
    "RECONCILE_INTERVAL_SECONDS",
    "REPLICA_GRACE",
    "reconcile_loop",
    "start_duties",
]
