"""Audit retention end to end: the configured deadline on every leaf, erasure in small batches."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy import event

from gateway.app import load_parts, open_node
from gateway.audit import tables
from gateway.audit.store import AuditLog, to_us
from gateway.audit.verify import verify_database
from tests.support.audit import node, record
from tests.support.pki import RR, Federation

START = 1_780_000_000
"""The records' start time (seconds); they end one second later."""


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def _deadlines(log: AuditLog) -> list[int | None]:
    with log.engine.connect() as conn:
        rows = conn.execute(sa.select(tables.leaf.c.retain_until_us).order_by(tables.leaf.c.idx))
        return [None if v is None else int(v) for v in rows.scalars()]


def test_bodies_are_erased_when_their_deadline_passes_and_the_log_still_verifies(
    db_url: str,
) -> None:
    end = datetime.fromtimestamp(START + 1, UTC)
    clock = Clock(end)
    n = node(db_url)
    n.log = AuditLog(n.log.engine, default_retention=timedelta(days=30), clock=clock)
    n.checkpointer.log = n.log
    n.log.append_many([record(start_seconds=START) for _ in range(12)])
    n.log.append_many([record(start_seconds=START + 86_400) for _ in range(8)])
    n.checkpointer.sign()
    n.cosign_latest()
    deadline = to_us(end + timedelta(days=30))
    assert _deadlines(n.log) == [deadline] * 12 + [deadline + 86_400_000_000] * 8

    clock.now = end + timedelta(days=30) - timedelta(seconds=1)
    assert n.log.erase_expired() == 0
    clock.now = end + timedelta(days=30)
    assert n.log.erase_expired() == 12
    report = verify_database(n.log.engine, n.keys)
    assert report.ok, report.message
    assert report.erased == 12
    assert "12 bodies erased" in report.message
    clock.now += timedelta(days=1)
    assert n.log.erase_expired() == 8
    assert verify_database(n.log.engine, n.keys).erased == 20
    n.log.close()


def test_a_large_erasure_commits_in_batches(db_url: str) -> None:
    clock = Clock(datetime.fromtimestamp(START, UTC))
    n = node(db_url)
    log = AuditLog(n.log.engine, default_retention=timedelta(days=1), clock=clock)
    for _ in range(3):
        log.append_many([record(start_seconds=START) for _ in range(400)])
    commits: list[int] = []
    event.listen(log.engine, "commit", lambda conn: commits.append(1))
    clock.now += timedelta(days=2)
    assert log.erase_expired(batch=500) == 1200
    assert len(commits) == 3, "1200 bodies: two full batches of 500, then 200"
    with log.engine.connect() as conn:
        left = conn.execute(
            sa.select(sa.func.count()).where(tables.leaf.c.data.is_not(None))
        ).scalar_one()
    assert left == 0
    assert log.erase_expired(batch=500) == 0
    log.close()


def test_the_node_gives_every_record_the_configured_deadline(tmp_path: Path) -> None:
    federation = Federation(tmp_path)
    config = federation.config(federation.node(RR), extra="\n[audit]\nretention_days = 7\n")
    parts = load_parts(config)
    try:
        rec = record(start_seconds=START)
        parts.audit.append_sync(rec)
        end = datetime.fromtimestamp(START + 1, UTC)
        assert _deadlines(parts.audit) == [to_us(end + timedelta(days=7))]
    finally:
        parts.audit.close()
        parts.engine.dispose()


async def test_the_node_purge_erases_expired_bodies(tmp_path: Path) -> None:
    federation = Federation(tmp_path)
    config = federation.config(federation.node(RR), extra="\n[audit]\nretention_days = 1\n")
    node_ = open_node(config)
    audit = node_.parts.audit
    old = [record(start_seconds=1_600_000_000) for _ in range(3)]
    audit.append_many([*old, record(start_seconds=int(datetime.now(UTC).timestamp()))])
    await node_.start()
    try:
        for _ in range(100):
            with audit.engine.connect() as conn:
                erased = conn.execute(
                    sa.select(sa.func.count()).where(tables.leaf.c.data.is_(None))
                ).scalar_one()
            if erased == 3:
                break
            await asyncio.sleep(0.1)
        assert erased == 3
    finally:
        await node_.stop()
