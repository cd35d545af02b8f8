"""The task broker: work the node hands to its local partner systems.

Each partner organisation has one queue of :class:`schakel.v1.partner_pb2.PartnerTask`.
A ``ReceiveTasks`` stream of that organisation takes tasks of the kinds it
asked for; a task waits in the queue until a stream takes it or its deadline
passes. Tasks that expect an answer (HIT_QUERY, FACT_QUERY) are pending until
``AnswerHit``/``AnswerFacts`` resolves them, the deadline lapses, or the asker
gives up. A task for an organisation with no open stream is simply never
answered: the asker counts it unanswered at the deadline.

Delivery is durable and at least once. A FACT_DELIVERY is written (sealed)
to ``partner_tasks`` (:mod:`gateway.tasks.store`) before it is queued, and
its acknowledgement before that is confirmed. A question's row and the other
changes of state are written in batches just after: a question cannot
outlive the process anyway, and a lost state change costs at most one more
send. A task a stream takes is *sent*; it is *done* once answered,
acknowledged (``AcknowledgeTask``, for FACT_DELIVERY) or lapsed, and its row
is purged with the expired ones soon after (:meth:`TaskBroker.purge_expired`). When an organisation
opens a new stream, its sent-but-not-done tasks of the kinds asked go out
again, at most :data:`MAX_DELIVERY_ATTEMPTS` times in all. After a restart
:meth:`TaskBroker.recover` queues the open deliveries again; open questions
lapse, since the asker awaiting them died with the old process. Replicas
on PostgreSQL use :class:`gateway.tasks.replicas.SharedTaskBroker` instead.

The broker holds no audit records: every answer is audited by
:mod:`gateway.flows.answers` before it is acknowledged, and every task the
node sends is audited by the flow that makes it. A call that does not fit an
open task raises a :class:`TaskError` of the node's one error tree.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter, deque
from collections.abc import AsyncIterator, Callable, Collection, Coroutine
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp
from schakel.v1 import partner_pb2
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from gateway.cases.store import utc_now
from gateway.cases.vault import FactVault
from gateway.errors import (
    UnavailableError,
    quote,
)
from gateway.logging import get_logger
from gateway.observability import metrics
from gateway.tasks.model import (
    Answer,
    PendingTask,
    TaskError,
    TaskKindError,
    TaskNotFoundError,
    TaskNotYoursError,
    Withheld,
)
from gateway.tasks.store import ANSWERED_KINDS, PURGE_BATCH, SENT, TaskStore

log = get_logger("tasks")

MAX_QUEUED_PER_ORG = 10_000
"""Bound on tasks waiting for one organisation; beyond it the oldest task is dropped."""
MAX_DELIVERY_ATTEMPTS = 20
"""How often one task is sent at most; a task a partner never settles is then dropped."""


@dataclass
class _OrgQueue:
    tasks: deque[PendingTask] = field(default_factory=deque)
    sent: dict[str, PendingTask] = field(default_factory=dict)
    """Taken by a stream and neither answered, acknowledged nor lapsed yet."""
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)
    streams: int = 0


class TaskBroker:
    """Per-organisation queues of tasks with deadlines, kept in ``partner_tasks``."""

    def __init__(
        self, engine: Engine, vault: FactVault, *, clock: Callable[[], datetime] = utc_now
    ) -> None:
        """Keep tasks on ``engine``, their content sealed under the case ``vault``'s key."""
        self._store = TaskStore(engine, vault, clock=clock)
        self._orgs: dict[str, _OrgQueue] = {}
        self._live: dict[str, PendingTask] = {}
        """Every task that is queued or sent, by id."""
        self._background: set[asyncio.Task[None]] = set()
        self._inserts: list[dict[str, Any]] = []
        self._sent: Counter[str] = Counter()
        self._done: list[str] = []
        """Rows, sends and settled ids for the table, written in batches by ``_flusher``."""
        self._flusher: asyncio.Task[None] | None = None

    def spawn(self, work: Coroutine[Any, Any, None], name: str) -> None:
        """Run ``work`` (e.g. a round after a referral) in the background until it ends or
        :meth:`close`; its failure is logged by exception type only."""

        async def guarded() -> None:
            try:
                await work
            except Exception as exc:  # a background flow must never take the node down
                log.error("background_flow_failed", flow=name, error=type(exc).__name__)

        task = asyncio.create_task(guarded(), name=name)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def close(self) -> None:
        """Cancel background work and lapse every open question (node shutdown).

        Deliveries stay in the table for the next start.
        """
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        for pending in list(self._live.values()):
            if pending.answer is not None:
                if not pending.answer.done():
                    pending.answer.cancel()
                self._finish(pending)
        await self._flushed()

    async def settle(self) -> None:
        """Wait until the background work started so far has ended (tests, shutdown)."""
        await asyncio.gather(*list(self._background), return_exceptions=True)
        await self._flushed()

    async def recover(self) -> None:
        """Queue again the deliveries a previous run left open; call once before serving.

        Expired tasks are deleted and open questions marked done (lapsed).
        """
        found = await asyncio.to_thread(self._store.recover)
        wall, mono = time.time(), time.monotonic()
        for task_id, org_id in found.unreadable:
            log.error("partner_task_unreadable", task_id=task_id, org_id=org_id)
        for stored in found.deliveries:
            pending = PendingTask(
                task=stored.task,
                org_id=stored.org_id,
                subject=stored.subject,
                expires=mono + (stored.expires_at.timestamp() - wall),
                answer=None,
                attempts=stored.attempts,
                created=stored.created_at.timestamp(),
            )
            queue = self._org(stored.org_id)
            self._live[stored.task.task_id] = pending
            if stored.state == SENT:
                queue.sent[stored.task.task_id] = pending
            else:
                queue.tasks.append(pending)
        for queue in self._orgs.values():
            async with queue.changed:
                queue.changed.notify_all()
        log.info(
            "partner_tasks_recovered",
            deliveries=len(found.deliveries),
            lapsed=found.lapsed,
            expired=found.expired,
            unreadable=len(found.unreadable),
        )

    async def purge_expired(self, now: datetime | None = None) -> int:
        """Delete the tasks past their deadline (the node's retention loop); returns how many.

        A done task's deadline is :data:`~gateway.tasks.store.DONE_KEPT` after it
        was settled. Rows go :data:`~gateway.tasks.store.PURGE_BATCH` per
        transaction, each in its own thread hop, so writers wait for one short
        batch at most, never for the whole purge.
        """
        purged = 0
        while (batch := await asyncio.to_thread(self._store.purge_expired, now)) > 0:
            purged += batch
            if batch < PURGE_BATCH:
                break
        mono = time.monotonic()
        for pending in list(self._live.values()):
            if pending.answer is None and mono > pending.expires:
                self._forget(pending)
        return purged

    def _org(self, org_id: str) -> _OrgQueue:
        queue = self._orgs.get(org_id)
        if queue is None:
            queue = self._orgs[org_id] = _OrgQueue()
        return queue

    def open_counts(self) -> dict[tuple[str, str], int]:
        """Open tasks by (organisation, queued or sent) as the table holds them (blocking)."""
        return self._store.open_counts()

    def streams(self, org_id: str) -> int:
        """How many ReceiveTasks streams ``org_id`` has open now on this process."""
        queue = self._orgs.get(org_id)
        return queue.streams if queue is not None else 0

    async def taken(self, pending: PendingTask) -> bool:
        """Whether a stream took ``pending`` before it was settled or lapsed."""
        return pending.attempts > 0

    async def send(
        self, org_id: str, task: partner_pb2.PartnerTask, *, subject: str, timeout: float
    ) -> PendingTask:
        """Store and queue ``task`` for ``org_id`` with a fresh id and a deadline
        ``timeout`` s from now; raises UnavailableError when it cannot be stored."""
        task.task_id = uuid.uuid4().hex
        created = self._store.now()
        deadline = Timestamp()
        deadline.FromDatetime(created + timedelta(seconds=timeout))
        task.deadline.CopyFrom(deadline)
        row = self._store.row(
            task,
            org_id,
            subject,
            created_at=created,
            expires_at=created + timedelta(seconds=timeout),
        )
        if task.kind in ANSWERED_KINDS:
            self._inserts.append(row)
            self._flush_soon()
        else:
            try:
                await asyncio.to_thread(self._store.insert, row)
            except SQLAlchemyError as exc:
                log.error("partner_task_not_stored", kind=int(task.kind), error=type(exc).__name__)
                raise UnavailableError(
                    f"a task for {org_id} could not be stored, so it was not sent; try again"
                ) from None
        loop = asyncio.get_running_loop()
        pending = PendingTask(
            task=task,
            org_id=org_id,
            subject=subject,
            expires=time.monotonic() + timeout,
            answer=loop.create_future() if task.kind in ANSWERED_KINDS else None,
            created=created.timestamp(),
        )
        queue = self._org(org_id)
        if len(queue.tasks) >= MAX_QUEUED_PER_ORG:
            self._drop(queue.tasks[0], "queue_full")
        queue.tasks.append(pending)
        self._live[task.task_id] = pending
        metrics.task_queued(org_id, partner_pb2.TaskKind.Name(task.kind))
        async with queue.changed:
            queue.changed.notify_all()
        return pending

    async def wait(self, pending: PendingTask) -> Answer | None:
        """The answer to ``pending``, or None when its deadline passes first."""
        if pending.answer is None:
            raise ValueError("this task kind expects no answer")
        remaining = pending.expires - time.monotonic()
        try:
            return await asyncio.wait_for(asyncio.shield(pending.answer), max(remaining, 0.0))
        except TimeoutError:
            return None
        finally:
            self._finish(pending)

    def claim(self, task_id: str, org_id: str) -> PendingTask:
        """The open task ``task_id`` if ``org_id`` may answer it.

        TaskNotFoundError or TaskNotYoursError say why not.
        """
        pending = self._live.get(task_id)
        if pending is None or time.monotonic() > pending.expires:
            raise TaskNotFoundError(
                f"no open task {quote(task_id)}: unknown, already answered, or past its deadline"
            )
        if pending.org_id != org_id:
            raise TaskNotYoursError(f"task {quote(task_id)} was sent to another organisation")
        return pending

    async def claim_open(self, task_id: str, org_id: str) -> PendingTask:
        """:meth:`claim`, where the task may have been made by another replica."""
        return self.claim(task_id, org_id)

    async def deliver(self, pending: PendingTask, answer: Answer) -> bool:
        """:meth:`resolve`, where the asker may wait on another replica."""
        return self.resolve(pending, answer)

    def resolve(self, pending: PendingTask, answer: Answer) -> bool:
        """Hand ``answer`` to the asker; False when the task lapsed meanwhile."""
        if self._live.get(pending.task.task_id) is not pending:
            return False
        if pending.answer is None or pending.answer.done():
            return False
        pending.answer.set_result(answer)
        # The asker's wait() marks it done in the table; no stream may send it again.
        self._forget(pending)
        return True

    async def acknowledge(self, task_id: str, org_id: str) -> PendingTask:
        """Settle the delivery ``task_id`` for good once ``org_id`` stored it.

        A :class:`TaskError` says why not; UnavailableError when the table
        could not be written (the delivery stays open; try again).
        """
        pending = await self.claim_open(task_id, org_id)
        if pending.task.kind in ANSWERED_KINDS:
            kind = partner_pb2.TaskKind.Name(pending.task.kind)
            raise TaskKindError(
                f"task {quote(task_id)} is a {kind} task: its answer acknowledges it, "
                "AcknowledgeTask is for FACT_DELIVERY tasks"
            )
        try:
            # The batched send count first: settled first, the row would never count the send.
            await self._flushed()
            await asyncio.to_thread(self._store.mark_done, [task_id])
        except SQLAlchemyError as exc:
            log.error("partner_task_ack_not_saved", task_id=task_id, error=type(exc).__name__)
            raise UnavailableError(
                f"the acknowledgement of task {quote(task_id)} could not be stored; try again"
            ) from None
        self._forget(pending)
        log.info(
            "partner_task_acknowledged", task_id=task_id, org_id=org_id, attempts=pending.attempts
        )
        return pending

    async def stream(
        self, org_id: str, kinds: Collection[partner_pb2.TaskKind.ValueType]
    ) -> AsyncIterator[partner_pb2.PartnerTask]:
        """Tasks for ``org_id`` of ``kinds`` (all when empty), as they come, until cancelled.

        Opening a stream first requeues the organisation's sent but unsettled
        tasks of ``kinds``: the stream that took them may have broken before
        the partner had them.
        """
        queue = self._org(org_id)
        queue.streams += 1
        try:
            self._redeliver(queue, kinds)
            while True:
                async with queue.changed:
                    taken = self._take(queue, kinds)
                    while taken is None:
                        await queue.changed.wait()
                        taken = self._take(queue, kinds)
                yield taken.task
        finally:
            queue.streams -= 1

    def _take(
        self, queue: _OrgQueue, kinds: Collection[partner_pb2.TaskKind.ValueType]
    ) -> PendingTask | None:
        now = time.monotonic()
        for pending in list(queue.tasks):
            if now > pending.expires:
                # Never sent late; the asker times out, the purge deletes the row.
                self._forget(pending)
            elif not kinds or pending.task.kind in kinds:
                queue.tasks.remove(pending)
                pending.attempts += 1
                queue.sent[pending.task.task_id] = pending
                self._sent[pending.task.task_id] += 1
                self._flush_soon()
                return pending
        return None

    def _redeliver(
        self, queue: _OrgQueue, kinds: Collection[partner_pb2.TaskKind.ValueType]
    ) -> None:
        now = time.monotonic()
        again: list[PendingTask] = []
        for pending in list(queue.sent.values()):
            if kinds and pending.task.kind not in kinds:
                continue
            if now > pending.expires:
                self._forget(pending)
            elif pending.attempts >= MAX_DELIVERY_ATTEMPTS:
                self._drop(pending, "max_attempts")
            else:
                del queue.sent[pending.task.task_id]
                again.append(pending)
        again.sort(key=lambda p: p.created)
        queue.tasks.extendleft(reversed(again))

    def _forget(self, pending: PendingTask) -> None:
        """Remove ``pending`` from memory; the table is not touched."""
        task_id = pending.task.task_id
        if self._live.get(task_id) is pending:
            del self._live[task_id]
        queue = self._orgs.get(pending.org_id)
        if queue is None:
            return
        if queue.sent.get(task_id) is pending:
            del queue.sent[task_id]
        if pending in queue.tasks:
            queue.tasks.remove(pending)

    def _finish(self, pending: PendingTask) -> None:
        """Forget ``pending`` and mark it done in the table soon."""
        self._forget(pending)
        self._done.append(pending.task.task_id)
        self._flush_soon()

    def _flush_soon(self) -> None:
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush(), name="partner-task-writes")

    def _drop(self, pending: PendingTask, reason: str) -> None:
        log.warning(
            "partner_task_dropped",
            task_id=pending.task.task_id,
            org_id=pending.org_id,
            attempts=pending.attempts,
            reason=reason,
        )
        self._finish(pending)

    async def _flush(self) -> None:
        while self._inserts or self._sent or self._done:
            inserts, sent, done = self._inserts, self._sent, self._done
            self._inserts, self._sent, self._done = [], Counter(), []
            await self._write(self._store.apply, inserts, sent, done)

    async def _flushed(self) -> None:
        if self._flusher is not None:
            await asyncio.shield(self._flusher)

    async def _write(self, fn: Callable[..., object], *args: Any) -> None:
        """Run a state write in a thread; a failure is logged, the task stays open."""
        try:
            await asyncio.to_thread(fn, *args)
        except SQLAlchemyError as exc:
            log.error("partner_task_state_not_saved", error=type(exc).__name__)


__all__ = [
    "MAX_DELIVERY_ATTEMPTS",
    "MAX_QUEUED_PER_ORG",
    "Answer",
    "PendingTask",
    "TaskBroker",
    "TaskError",
    "TaskKindError",
    "TaskNotFoundError",
    "TaskNotYoursError",
    "Withheld",
]
