"""The durable side of the task broker: one row per partner task, its content sealed.

The schema is created by the Alembic revision ``0003_partner_tasks``; keep
the two in step (tests/gateway/test_task_broker.py compares them). A row
holds in the clear only what the node needs to route and bound delivery:
the task id, the organisation, the kind, the subject's node-domain
pseudonym (the cases table holds the same), timestamps, state and attempts.
The serialized :class:`schakel.v1.partner_pb2.PartnerTask` (facts, the
subject encrypted to the partner's domain, the case) is AES-256-GCM
ciphertext under the case vault's key, with the organisation and task id
bound as associated data, so a row moved to another organisation or swapped
with another row fails authentication instead of being delivered. A task
that is done keeps neither its content nor its subject, and its deadline
moves to :data:`DONE_KEPT` from then, so the purge, which deletes rows
past their deadline :data:`PURGE_BATCH` at a time, takes it soon after.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from google.protobuf.message import DecodeError
from schakel.v1 import partner_pb2
from sqlalchemy.engine import Engine

from gateway.cases.errors import FactIntegrityError
from gateway.cases.store import utc_now
from gateway.cases.tables import UTCDateTime
from gateway.cases.vault import FactVault
from gateway.storage import metadata

QUEUED = "queued"
SENT = "sent"
DONE = "done"

ANSWERED_KINDS = frozenset({partner_pb2.TASK_KIND_HIT_QUERY, partner_pb2.TASK_KIND_FACT_QUERY})
"""Kinds an asker in this process awaits; they cannot outlive the process."""

DONE_KEPT = timedelta(minutes=1)
"""How long a done task's row (without content or subject) stays before the purge takes it."""
PURGE_BATCH = 500
"""Rows one purge transaction deletes at most, so a purge never holds the write lock for long."""

_SCOPE = "schakel/v1/partner-task"
"""Stands where the vault binds a case id: no case id looks like it, so a case
fact and a task can never be passed off as each other."""

partner_tasks = sa.Table(
    "partner_tasks",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("org_id", sa.String(63), nullable=False, index=True),
    sa.Column("kind", sa.SmallInteger, nullable=False),
    # Cleared once the task is done, like its sealed content.
    sa.Column("subject_pseudonym", sa.String(64)),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("expires_at", UTCDateTime, nullable=False, index=True),
    sa.Column("state", sa.String(8), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("key_id", sa.String(16), nullable=False),
    # 12-byte nonce || AES-256-GCM ciphertext and tag of a serialized PartnerTask.
    sa.Column("sealed", sa.LargeBinary),
    sa.CheckConstraint("state IN ('queued', 'sent', 'done')", name="state"),
)


@dataclass(frozen=True)
class StoredTask:
    """An open delivery read back from the table."""

    task: partner_pb2.PartnerTask
    org_id: str
    subject: str
    state: str
    attempts: int
    created_at: datetime
    expires_at: datetime


@dataclass(frozen=True)
class Recovered:
    """What :meth:`TaskStore.recover` found when the node started."""

    deliveries: list[StoredTask]
    """Open deliveries, oldest first."""
    expired: int
    """Rows past their deadline, deleted."""
    lapsed: int
    """Open questions whose asker died with the previous process, now done."""
    unreadable: list[tuple[str, str]]
    """(task id, org id) of rows that failed authentication, now done."""


def _settle(which: sa.ColumnElement[bool], now: datetime) -> sa.Update:
    """Mark the tasks ``which`` selects done: content and subject go, and each row
    expires :data:`DONE_KEPT` after ``now`` (or at its deadline, if sooner)."""
    t = partner_tasks
    kept_until = sa.literal(now + DONE_KEPT, UTCDateTime())
    return (
        sa.update(t)
        .where(which, t.c.state != DONE)
        .values(
            state=DONE,
            sealed=None,
            subject_pseudonym=None,
            expires_at=sa.case((t.c.expires_at > kept_until, kept_until), else_=t.c.expires_at),
        )
    )


class TaskStore:
    """Reads and writes ``partner_tasks``; every method is blocking (run it in a thread)."""

    def __init__(
        self, engine: Engine, vault: FactVault, *, clock: Callable[[], datetime] = utc_now
    ) -> None:
        """Store on ``engine``, sealing under ``vault``; ``clock`` gives aware UTC times."""
        self._engine = engine
        self._vault = vault
        self.now = clock

    def row(
        self,
        task: partner_pb2.PartnerTask,
        org_id: str,
        subject: str,
        *,
        created_at: datetime,
        expires_at: datetime,
    ) -> dict[str, Any]:
        """The new, queued row of ``task`` (its task_id set) for ``org_id``, sealed."""
        return {
            "id": task.task_id,
            "org_id": org_id,
            "kind": int(task.kind),
            "subject_pseudonym": subject,
            "created_at": created_at,
            "expires_at": expires_at,
            "state": QUEUED,
            "attempts": 0,
            "key_id": self._vault.key_id,
            "sealed": self._vault.seal(_SCOPE, org_id, task.task_id, task.SerializeToString()),
        }

    def insert(self, row: dict[str, Any]) -> None:
        """Store one row made by :meth:`row`, committed before this returns."""
        with self._engine.begin() as conn:
            conn.execute(sa.insert(partner_tasks), [row])

    def apply(
        self, inserts: Sequence[dict[str, Any]], sent: Mapping[str, int], done: Collection[str]
    ) -> None:
        """Write a batch in one transaction: new rows, then sends, then settled tasks.

        ``sent`` maps a task id to how often streams took it since the last
        batch; a task already done is not counted. The order is the order in
        which these happen to one task, so a batch never undoes itself.
        """
        t = partner_tasks
        with self._engine.begin() as conn:
            if inserts:
                conn.execute(sa.insert(t), list(inserts))
            by_count: dict[int, list[str]] = {}
            for task_id, count in sent.items():
                by_count.setdefault(count, []).append(task_id)
            for count, ids in by_count.items():
                conn.execute(
                    sa.update(t)
                    .where(t.c.id.in_(ids), t.c.state != DONE)
                    .values(state=SENT, attempts=t.c.attempts + count)
                )
            if done:
                conn.execute(_settle(t.c.id.in_(list(done)), self.now()))

    def mark_done(self, task_ids: Collection[str]) -> int:
        """Mark tasks done and drop their content and subject; returns how many changed."""
        if not task_ids:
            return 0
        with self._engine.begin() as conn:
            which = partner_tasks.c.id.in_(list(task_ids))
            return conn.execute(_settle(which, self.now())).rowcount

    def purge_expired(self, now: datetime | None = None, limit: int = PURGE_BATCH) -> int:
        """Delete at most ``limit`` tasks past their deadline at ``now``, whatever their state,
        in one short transaction; returns how many (fewer than ``limit``: none are left)."""
        at = now if now is not None else self.now()
        t = partner_tasks
        with self._engine.begin() as conn:
            ids = list(
                conn.execute(sa.select(t.c.id).where(t.c.expires_at <= at).limit(limit)).scalars()
            )
            if not ids:
                return 0
            return conn.execute(sa.delete(t).where(t.c.id.in_(ids))).rowcount

    def open_counts(self, now: datetime | None = None) -> dict[tuple[str, str], int]:
        """Open tasks within their deadline by (organisation, state), for the metrics."""
        at = now if now is not None else self.now()
        t = partner_tasks
        query = (
            sa.select(t.c.org_id, t.c.state, sa.func.count())
            .where(t.c.state != DONE, t.c.expires_at > at)
            .group_by(t.c.org_id, t.c.state)
        )
        with self._engine.connect() as conn:
            return {(org, state): int(n) for org, state, n in conn.execute(query)}

    def recover(self, now: datetime | None = None) -> Recovered:
        """At start-up: delete expired rows, lapse open questions, read open deliveries."""
        at = now if now is not None else self.now()
        t = partner_tasks
        expired = 0
        while (purged := self.purge_expired(at)) > 0:
            expired += purged
        with self._engine.begin() as conn:
            lapsed = conn.execute(
                _settle(t.c.kind.in_([int(k) for k in ANSWERED_KINDS]), at)
            ).rowcount
            rows = conn.execute(
                sa.select(t).where(t.c.state != DONE).order_by(t.c.created_at, t.c.id)
            ).all()
        deliveries: list[StoredTask] = []
        unreadable: list[tuple[str, str]] = []
        for row in rows:
            task = self._open(row)
            if task is None:
                unreadable.append((row.id, row.org_id))
                continue
            deliveries.append(
                StoredTask(
                    task=task,
                    org_id=row.org_id,
                    subject=row.subject_pseudonym or "",
                    state=row.state,
                    attempts=row.attempts,
                    created_at=row.created_at,
                    expires_at=row.expires_at,
                )
            )
        self.mark_done([task_id for task_id, _ in unreadable])
        return Recovered(deliveries, expired, lapsed, unreadable)

    def _open(self, row: sa.Row[tuple[object, ...]]) -> partner_pb2.PartnerTask | None:
        """The row's task, or None when it does not authenticate or does not match its row."""
        if row.sealed is None:
            return None
        try:
            plain = self._vault.open(_SCOPE, row.org_id, row.id, row.sealed, row.key_id)
            task = partner_pb2.PartnerTask.FromString(plain)
        except (FactIntegrityError, DecodeError):
            return None
        if task.task_id != row.id or int(task.kind) != row.kind:
            return None
        return task


__all__ = [
    "ANSWERED_KINDS",
    "DONE",
    "DONE_KEPT",
    "PURGE_BATCH",
    "QUEUED",
    "SENT",
    "Recovered",
    "StoredTask",
    "TaskStore",
    "partner_tasks",
]
