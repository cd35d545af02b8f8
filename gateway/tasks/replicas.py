"""The task broker for replicas of one node on one PostgreSQL.

Any replica serves any call, so a task made on replica B must reach a
partner whose ``ReceiveTasks`` stream is open on replica A, and a partner's
answer taken by A must reach the flow on B that awaits it. The
``partner_tasks`` table (:mod:`gateway.tasks.relay`) is the queue: every
task is committed there before :meth:`SharedTaskBroker.send` returns,
together with a NOTIFY that wakes the organisation's streams on every
replica, and a stream takes rows with ``FOR UPDATE SKIP LOCKED``. An answer
for an asker on another replica is sealed into ``partner_answers`` and
announced the same way. A stream also looks at the table every
:data:`POLL_SECONDS` and an asker every :data:`ANSWER_POLL_SECONDS`, so a
notification lost while a listener reconnects costs a delay, never a task.

A replica that dies loses only its askers (their callers see the call
fail and were never answered OK). Its open questions lapse at their
deadline; the tasks its streams took stay *sent* and go out again when the
partner opens its next stream, on whichever replica, as in one process.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Callable, Collection
from datetime import datetime, timedelta

from google.protobuf.timestamp_pb2 import Timestamp
from schakel.v1 import partner_pb2
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from gateway.cases.store import utc_now
from gateway.cases.vault import FactVault
from gateway.errors import UnavailableError, quote
from gateway.logging import get_logger
from gateway.observability import metrics
from gateway.storage.shared import Listener, channel_of
from gateway.tasks.broker import MAX_DELIVERY_ATTEMPTS, TaskBroker
from gateway.tasks.model import Answer, PendingTask, TaskNotFoundError, TaskNotYoursError
from gateway.tasks.relay import SharedTaskStore
from gateway.tasks.store import ANSWERED_KINDS, StoredTask

log = get_logger("tasks.replicas")

POLL_SECONDS = 2.0
"""How often an idle stream looks at the table without being woken."""
ANSWER_POLL_SECONDS = 1.0
"""How often an asker looks for an answer left by another replica without being woken."""
TAKE_BATCH = 16
"""Rows a stream takes at once; any it could not send before it broke go out again."""
TASKS_CHANNEL = "schakel_tasks"
ANSWERS_CHANNEL = "schakel_answers"


class SharedTaskBroker(TaskBroker):
    """A :class:`TaskBroker` whose queue is the table that all replicas share."""

    def __init__(
        self, engine: Engine, vault: FactVault, *, clock: Callable[[], datetime] = utc_now
    ) -> None:
        """Keep tasks on ``engine`` (PostgreSQL), sealed under the case ``vault``'s key."""
        super().__init__(engine, vault, clock=clock)
        self._engine = engine
        self._shared = SharedTaskStore(engine, vault, clock=clock)
        self._wake: dict[str, asyncio.Event] = {}
        """Per organisation: set (and replaced) when its queue may have grown."""
        self._listener: Listener | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks_channel = ""
        self._answers_channel = ""

    async def recover(self) -> None:
        """Purge expired rows and start listening; the open tasks stay in the table for
        whichever replica's stream takes them (questions of other replicas are live)."""
        self._loop = asyncio.get_running_loop()
        self._tasks_channel = await asyncio.to_thread(channel_of, self._engine, TASKS_CHANNEL)
        self._answers_channel = await asyncio.to_thread(channel_of, self._engine, ANSWERS_CHANNEL)
        expired = await self.purge_expired()
        self._listener = Listener(
            self._engine,
            [self._tasks_channel, self._answers_channel],
            self._notified,
            self._reconnected,
        )
        await asyncio.to_thread(self._listener.start)
        log.info("partner_tasks_shared", expired=expired)

    async def close(self) -> None:
        """As :meth:`TaskBroker.close`, then stop listening."""
        await super().close()
        if self._listener is not None:
            await asyncio.to_thread(self._listener.stop)

    async def purge_expired(self, now: datetime | None = None) -> int:
        """As :meth:`TaskBroker.purge_expired`, and answers nobody took."""
        purged = await super().purge_expired(now)
        await asyncio.to_thread(self._shared.purge_answers)
        return purged

    async def send(
        self, org_id: str, task: partner_pb2.PartnerTask, *, subject: str, timeout: float
    ) -> PendingTask:
        """Store ``task`` for ``org_id`` and wake its streams on every replica; raises
        UnavailableError when it cannot be stored (then it was not sent)."""
        task.task_id = uuid.uuid4().hex
        created = self._store.now()
        expires_at = created + timedelta(seconds=timeout)
        deadline = Timestamp()
        deadline.FromDatetime(expires_at)
        task.deadline.CopyFrom(deadline)
        row = self._store.row(task, org_id, subject, created_at=created, expires_at=expires_at)
        loop = asyncio.get_running_loop()
        pending = PendingTask(
            task=task,
            org_id=org_id,
            subject=subject,
            expires=time.monotonic() + timeout,
            answer=loop.create_future() if task.kind in ANSWERED_KINDS else None,
            created=created.timestamp(),
        )
        if pending.answer is not None:
            self._live[task.task_id] = pending  # before any replica can answer it
        try:
            await asyncio.to_thread(self._shared.insert_notify, row, self._tasks_channel)
        except SQLAlchemyError as exc:
            self._live.pop(task.task_id, None)
            log.error("partner_task_not_stored", kind=int(task.kind), error=type(exc).__name__)
            raise UnavailableError(
                f"a task for {org_id} could not be stored, so it was not sent; try again"
            ) from None
        metrics.task_queued(org_id, partner_pb2.TaskKind.Name(task.kind))
        self._wake_org(org_id)
        return pending

    async def wait(self, pending: PendingTask) -> Answer | None:
        """The answer to ``pending`` (from this replica or another), or None at its deadline."""
        future = pending.answer
        if future is None:
            raise ValueError("this task kind expects no answer")
        try:
            while (remaining := pending.expires - time.monotonic()) > 0:
                with contextlib.suppress(TimeoutError):
                    return await asyncio.wait_for(
                        asyncio.shield(future), min(remaining, ANSWER_POLL_SECONDS)
                    )
                await self._fetch_answer(pending)
                if future.done():
                    return future.result()
            return None
        finally:
            self._finish(pending)

    async def taken(self, pending: PendingTask) -> bool:
        """Whether a stream on any replica took ``pending``: the partner's stream may be open
        on another replica than the one that asked."""
        if pending.attempts:
            return True
        return await asyncio.to_thread(self._shared.was_taken, pending.task.task_id)

    async def claim_open(self, task_id: str, org_id: str) -> PendingTask:
        """The open task ``task_id`` if ``org_id`` may answer it, made here or on another
        replica; TaskNotFoundError or TaskNotYoursError say why not."""
        if task_id in self._live:
            return self.claim(task_id, org_id)
        stored = await asyncio.to_thread(self._shared.lookup, task_id)
        if stored is None:
            raise TaskNotFoundError(
                f"no open task {quote(task_id)}: unknown, already answered, or past its deadline"
            )
        if stored.org_id != org_id:
            raise TaskNotYoursError(f"task {quote(task_id)} was sent to another organisation")
        return _pending(stored, self._store.now())

    async def deliver(self, pending: PendingTask, answer: Answer) -> bool:
        """Hand ``answer`` to the asker here or, through the table, on another replica;
        False when the task was settled meanwhile. UnavailableError when the table failed."""
        task_id = pending.task.task_id
        if pending.task.kind not in ANSWERED_KINDS:
            return False
        left = timedelta(seconds=max(pending.expires - time.monotonic(), 0))
        try:
            if self._live.get(task_id) is pending:
                # Settled in the table first: a second answer, here or on another
                # replica, then finds no open task.
                settled = await asyncio.to_thread(self._store.mark_done, [task_id])
                return settled == 1 and self.resolve(pending, answer)
            return await asyncio.to_thread(
                self._shared.answer,
                task_id,
                answer,
                self._store.now() + left,
                self._answers_channel,
            )
        except SQLAlchemyError as exc:
            log.error("partner_answer_not_relayed", error=type(exc).__name__)
            raise UnavailableError(
                f"the answer to task {quote(pending.task.task_id)} could not be handed on; "
                "try again"
            ) from None

    async def stream(
        self, org_id: str, kinds: Collection[partner_pb2.TaskKind.ValueType]
    ) -> AsyncIterator[partner_pb2.PartnerTask]:
        """Tasks for ``org_id`` of ``kinds`` (all when empty) from the shared table, until
        cancelled; opening it first queues again the organisation's sent, unsettled tasks."""
        queue = self._org(org_id)
        queue.streams += 1
        try:
            dropped = await asyncio.to_thread(
                self._shared.requeue, org_id, kinds, MAX_DELIVERY_ATTEMPTS
            )
            for task_id in dropped:
                log.warning(
                    "partner_task_dropped", task_id=task_id, org_id=org_id, reason="max_attempts"
                )
            while True:
                woken = self._wake.setdefault(org_id, asyncio.Event())
                taken = await asyncio.to_thread(self._shared.take, org_id, kinds, TAKE_BATCH)
                for stored in taken:
                    yield stored.task
                if not taken:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(woken.wait(), POLL_SECONDS)
        finally:
            queue.streams -= 1

    def _wake_org(self, org_id: str) -> None:
        woken = self._wake.pop(org_id, None)
        if woken is not None:
            woken.set()

    def _notified(self, channel: str, payload: str) -> None:
        """From the listener's thread: hand the notification to the event loop."""
        if self._loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop has closed: nobody waits
                self._loop.call_soon_threadsafe(self._on_notification, channel, payload)

    def _reconnected(self) -> None:
        """From the listener's thread: notifications may have been missed, look again."""
        if self._loop is not None:
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._wake_all)

    def _wake_all(self) -> None:
        for org_id in list(self._wake):
            self._wake_org(org_id)

    def _on_notification(self, channel: str, payload: str) -> None:
        if channel == self._tasks_channel:
            self._wake_org(payload)
            return
        pending = self._live.get(payload)
        if pending is not None and pending.answer is not None and not pending.answer.done():
            self.spawn(self._fetch_answer(pending), "partner-answer")

    async def _fetch_answer(self, pending: PendingTask) -> None:
        """Take the answer another replica left for ``pending``, if there is one."""
        try:
            answer = await asyncio.to_thread(self._shared.take_answer, pending.task.task_id)
        except SQLAlchemyError as exc:
            log.warning("partner_answer_not_read", error=type(exc).__name__)
            return
        if answer is not None and pending.answer is not None and not pending.answer.done():
            pending.answer.set_result(answer)


def _pending(stored: StoredTask, now: datetime) -> PendingTask:
    """A task read from the table, as a claim returns it (nobody here awaits its answer)."""
    return PendingTask(
        task=stored.task,
        org_id=stored.org_id,
        subject=stored.subject,
        expires=time.monotonic() + (stored.expires_at - now).total_seconds(),
        answer=None,
        attempts=stored.attempts,
        created=stored.created_at.timestamp(),
    )


__all__ = ["ANSWER_POLL_SECONDS", "POLL_SECONDS", "SharedTaskBroker"]
