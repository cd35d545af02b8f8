"""The task table as replicas share it: tasks claimed row by row, answers handed across.

With replicas of a node on one PostgreSQL, ``partner_tasks``
(:mod:`gateway.tasks.store`) is the only queue. A stream takes queued rows
of its organisation with ``FOR UPDATE SKIP LOCKED``, so two streams on two
replicas never take the same row at once. A partner may answer on another
replica than the one whose flow asked: that replica seals the answer into
``partner_answers`` (same vault, its own scope) in the transaction that
marks the task done, and notifies; the asking replica takes the row and
deletes it. Every method is blocking (run it in a thread); PostgreSQL only.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime

import sqlalchemy as sa
from google.protobuf.message import DecodeError
from schakel.v1 import partner_pb2

from gateway.cases.errors import FactIntegrityError
from gateway.cases.tables import UTCDateTime
from gateway.storage import metadata
from gateway.tasks.model import Answer, Withheld
from gateway.tasks.store import DONE, DONE_KEPT, QUEUED, SENT, StoredTask, TaskStore, partner_tasks

_ANSWER_SCOPE = "schakel/v1/partner-answer"
"""Stands where the vault binds a case id, apart from the tasks' scope, so an
answer row and a task row can never be passed off as each other."""

partner_answers = sa.Table(
    "partner_answers",
    metadata,
    sa.Column("task_id", sa.String(32), primary_key=True),
    sa.Column("expires_at", UTCDateTime, nullable=False, index=True),
    sa.Column("key_id", sa.String(16), nullable=False),
    # 12-byte nonce || AES-256-GCM ciphertext and tag of an encoded answer.
    sa.Column("sealed", sa.LargeBinary, nullable=False),
)

_HIT, _FACTS, _WITHHELD = b"H", b"F", b"W"


def encode_answer(answer: Answer) -> bytes:
    """``answer`` as bytes: a kind byte, then the request (or the withholding rules)."""
    if isinstance(answer, Withheld):
        return _WITHHELD + "\n".join(answer.rule_ids).encode()
    kind = _HIT if isinstance(answer, partner_pb2.AnswerHitRequest) else _FACTS
    return kind + answer.SerializeToString()


def decode_answer(data: bytes) -> Answer:
    """The answer :func:`encode_answer` made; ValueError for anything else."""
    kind, body = data[:1], data[1:]
    if kind == _WITHHELD:
        return Withheld(tuple(body.decode().split("\n")) if body else ())
    if kind == _HIT:
        return partner_pb2.AnswerHitRequest.FromString(body)
    if kind == _FACTS:
        return partner_pb2.AnswerFactsRequest.FromString(body)
    raise ValueError("not an encoded answer")


def _kinds(kinds: Collection[partner_pb2.TaskKind.ValueType]) -> sa.ColumnElement[bool]:
    return partner_tasks.c.kind.in_([int(k) for k in kinds]) if kinds else sa.true()


def _notify(conn: sa.Connection, channel: str, payload: str) -> None:
    """Sent when the transaction commits, to every replica listening on ``channel``."""
    conn.execute(sa.select(sa.func.pg_notify(channel, payload)))


class SharedTaskStore(TaskStore):
    """:class:`TaskStore` plus what replicas need: claiming, requeueing, relaying answers."""

    def insert_notify(self, row: dict[str, object], channel: str) -> None:
        """Store one new row and wake the streams of its organisation on every replica."""
        with self._engine.begin() as conn:
            conn.execute(sa.insert(partner_tasks), [row])
            _notify(conn, channel, str(row["org_id"]))

    def was_taken(self, task_id: str) -> bool:
        """Whether a stream on any replica has taken the task (blocking)."""
        t = partner_tasks
        with self._engine.connect() as conn:
            attempts = conn.execute(sa.select(t.c.attempts).where(t.c.id == task_id)).scalar()
        return bool(attempts)

    def take(
        self, org_id: str, kinds: Collection[partner_pb2.TaskKind.ValueType], limit: int
    ) -> list[StoredTask]:
        """Mark up to ``limit`` queued tasks of ``org_id`` sent and return them, oldest first.

        Rows that do not authenticate are marked done and left out.
        """
        t = partner_tasks
        oldest = (
            sa.select(t.c.id)
            .where(
                t.c.org_id == org_id,
                t.c.state == QUEUED,
                t.c.expires_at > self.now(),
                _kinds(kinds),
            )
            .order_by(t.c.created_at, t.c.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        with self._engine.begin() as conn:
            rows = conn.execute(
                sa.update(t)
                .where(t.c.id.in_(oldest.scalar_subquery()))
                .values(state=SENT, attempts=t.c.attempts + 1)
                .returning(*t.c)
            ).all()
        taken, unreadable = [], []
        for row in sorted(rows, key=lambda r: (r.created_at, r.id)):
            stored = self._stored(row)
            if stored is None:
                unreadable.append(row.id)
            else:
                taken.append(stored)
        self.mark_done(unreadable)
        return taken

    def requeue(
        self, org_id: str, kinds: Collection[partner_pb2.TaskKind.ValueType], max_attempts: int
    ) -> list[str]:
        """Queue again the sent, unsettled tasks of ``org_id`` of ``kinds``; those sent
        ``max_attempts`` times already are dropped (done) instead: their ids are returned."""
        t = partner_tasks
        mine = sa.and_(t.c.org_id == org_id, t.c.state == SENT, _kinds(kinds))
        with self._engine.begin() as conn:
            spent = list(
                conn.execute(sa.select(t.c.id).where(mine, t.c.attempts >= max_attempts)).scalars()
            )
            conn.execute(sa.update(t).where(mine, t.c.attempts < max_attempts).values(state=QUEUED))
        self.mark_done(spent)
        return spent

    def lookup(self, task_id: str) -> StoredTask | None:
        """The open task ``task_id`` within its deadline, or None."""
        t = partner_tasks
        with self._engine.connect() as conn:
            row = conn.execute(
                sa.select(t).where(
                    t.c.id == task_id, t.c.state != DONE, t.c.expires_at > self.now()
                )
            ).first()
        return None if row is None else self._stored(row)

    def answer(self, task_id: str, answer: Answer, expires_at: datetime, channel: str) -> bool:
        """Settle question ``task_id`` with ``answer`` for the replica that asked it;
        False when it was settled already (answered, lapsed)."""
        sealed = self._vault.seal(_ANSWER_SCOPE, "answer", task_id, encode_answer(answer))
        t = partner_tasks
        with self._engine.begin() as conn:
            settled = conn.execute(
                sa.update(t)
                .where(t.c.id == task_id, t.c.state != DONE)
                .values(state=DONE, sealed=None, subject_pseudonym=None)
            ).rowcount
            if settled != 1:
                return False
            conn.execute(
                sa.insert(partner_answers).values(
                    task_id=task_id,
                    expires_at=expires_at + DONE_KEPT,
                    key_id=self._vault.key_id,
                    sealed=sealed,
                )
            )
            _notify(conn, channel, task_id)
        return True

    def take_answer(self, task_id: str) -> Answer | None:
        """The answer another replica left for ``task_id``, deleted as it is read; None if none."""
        a = partner_answers
        with self._engine.begin() as conn:
            row = conn.execute(
                sa.delete(a).where(a.c.task_id == task_id).returning(a.c.key_id, a.c.sealed)
            ).first()
        if row is None:
            return None
        try:
            plain = self._vault.open(_ANSWER_SCOPE, "answer", task_id, row.sealed, row.key_id)
            return decode_answer(plain)
        except (FactIntegrityError, ValueError, DecodeError):
            return None

    def purge_answers(self) -> int:
        """Delete answers nobody took before their deadline; returns how many."""
        a = partner_answers
        with self._engine.begin() as conn:
            return conn.execute(sa.delete(a).where(a.c.expires_at <= self.now())).rowcount

    def _stored(self, row: sa.Row[tuple[object, ...]]) -> StoredTask | None:
        task = self._open(row)
        if task is None:
            return None
        return StoredTask(
            task=task,
            org_id=row.org_id,
            subject=row.subject_pseudonym or "",
            state=row.state,
            attempts=row.attempts,
            created_at=row.created_at,
            expires_at=row.expires_at,
        )


__all__ = ["SharedTaskStore", "decode_answer", "encode_answer", "partner_answers"]
