"""The task broker: work the node hands to its local partner systems.

Each partner organisation has one queue of :class:`schakel.v1.partner_pb2.PartnerTask`.
A ``ReceiveTasks`` stream of that organisation takes tasks of the kinds it
asked for; a task waits in the queue until a stream takes it or its deadline
passes. Tasks that expect an answer (HIT_QUERY, FACT_QUERY) are pending until
``AnswerHit``/``AnswerFacts`` resolves them, the deadline lapses, or the asker
gives up. A task for an organisation with no open stream is simply never
answered: the asker counts it unanswered at the deadline.

The broker holds no audit records: every answer is audited by the servicer
before it is acknowledged, and every task the node sends is audited by the
flow that makes it.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Collection, Coroutine
from dataclasses import dataclass, field
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp
from schakel.v1 import partner_pb2

from gateway.logging import get_logger

log = get_logger("tasks")

ANSWERED_KINDS = frozenset({partner_pb2.TASK_KIND_HIT_QUERY, partner_pb2.TASK_KIND_FACT_QUERY})
MAX_QUEUED_PER_ORG = 10_000
"""Bound on tasks waiting for one organisation; beyond it the oldest task lapses."""


@dataclass(frozen=True)
class Withheld:
    """The partner answered, but policy kept the answer from the asker."""

    rule_ids: tuple[str, ...] = ()


Answer = partner_pb2.AnswerHitRequest | partner_pb2.AnswerFactsRequest | Withheld


class TaskError(Exception):
    """An answer that does not fit a pending task; ``reason`` is not_found or not_yours."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass
class PendingTask:
    """A sent task and what the node needs to judge and audit its answer."""

    task: partner_pb2.PartnerTask
    org_id: str
    subject: str
    """The node-domain pseudonym (hex) of the task's subject, for the audit record."""
    expires: float
    """``time.monotonic()`` after which the task lapses."""
    answer: asyncio.Future[Answer] | None
    """Resolved by the answer; None for tasks nobody answers (FACT_DELIVERY)."""


@dataclass
class _OrgQueue:
    tasks: deque[PendingTask] = field(default_factory=deque)
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)
    streams: int = 0


class TaskBroker:
    """Per-organisation queues of tasks with deadlines, and the answers awaited."""

    def __init__(self) -> None:
        self._orgs: dict[str, _OrgQueue] = {}
        self._pending: dict[str, PendingTask] = {}
        self._background: set[asyncio.Task[None]] = set()

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
        """Cancel background work and lapse every pending task (node shutdown)."""
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        for pending in list(self._pending.values()):
            self._lapse(pending)

    async def settle(self) -> None:
        """Wait until the background work started so far has ended (tests, shutdown)."""
        await asyncio.gather(*list(self._background), return_exceptions=True)

    def _org(self, org_id: str) -> _OrgQueue:
        queue = self._orgs.get(org_id)
        if queue is None:
            queue = self._orgs[org_id] = _OrgQueue()
        return queue

    def streams(self, org_id: str) -> int:
        """How many ReceiveTasks streams ``org_id`` has open now."""
        queue = self._orgs.get(org_id)
        return queue.streams if queue is not None else 0

    async def send(
        self, org_id: str, task: partner_pb2.PartnerTask, *, subject: str, timeout: float
    ) -> PendingTask:
        """Queue ``task`` for ``org_id`` with a fresh id and a deadline ``timeout`` s from now."""
        task.task_id = uuid.uuid4().hex
        deadline = Timestamp()
        deadline.FromNanoseconds(time.time_ns() + int(timeout * 1e9))
        task.deadline.CopyFrom(deadline)
        loop = asyncio.get_running_loop()
        pending = PendingTask(
            task=task,
            org_id=org_id,
            subject=subject,
            expires=time.monotonic() + timeout,
            answer=loop.create_future() if task.kind in ANSWERED_KINDS else None,
        )
        queue = self._org(org_id)
        if len(queue.tasks) >= MAX_QUEUED_PER_ORG:
            self._lapse(queue.tasks.popleft())
        queue.tasks.append(pending)
        if pending.answer is not None:
            self._pending[task.task_id] = pending
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
            self._lapse(pending)

    def _lapse(self, pending: PendingTask) -> None:
        self._pending.pop(pending.task.task_id, None)
        if pending.answer is not None and not pending.answer.done():
            pending.answer.cancel()
        queue = self._orgs.get(pending.org_id)
        if queue is not None and pending in queue.tasks:
            queue.tasks.remove(pending)

    def claim(self, task_id: str, org_id: str) -> PendingTask:
        """The pending task ``task_id`` if ``org_id`` may answer it (TaskError otherwise)."""
        pending = self._pending.get(task_id)
        if pending is None or time.monotonic() > pending.expires:
            raise TaskError(
                "not_found",
                f"no open task {task_id!r}: unknown, already answered, or past its deadline",
            )
        if pending.org_id != org_id:
            raise TaskError("not_yours", f"task {task_id!r} was sent to another organisation")
        return pending

    def resolve(self, pending: PendingTask, answer: Answer) -> bool:
        """Hand ``answer`` to the asker; False when the task lapsed meanwhile."""
        if self._pending.pop(pending.task.task_id, None) is None:
            return False
        if pending.answer is None or pending.answer.done():
            return False
        pending.answer.set_result(answer)
        return True

    async def stream(
        self, org_id: str, kinds: Collection[partner_pb2.TaskKind.ValueType]
    ) -> AsyncIterator[partner_pb2.PartnerTask]:
        """Tasks for ``org_id`` of ``kinds`` (all when empty), as they come, until cancelled."""
        queue = self._org(org_id)
        queue.streams += 1
        try:
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
                self._lapse(pending)
            elif not kinds or pending.task.kind in kinds:
                queue.tasks.remove(pending)
                return pending
        return None
