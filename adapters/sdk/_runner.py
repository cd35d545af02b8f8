"""Connects an adapter to its node: keeps the task stream open and answers tasks.

For each task the runner decrypts the subject with the partner's domain key
to the partner's own pseudonym, asks the adapter (in a worker thread, since
adapters do blocking I/O) and answers through the SDK. A broken stream is
reopened with exponential backoff; a task that fails is logged by its id and
kind only, never with a pseudonym or content, and does not stop the runner.

The node sends a task again on the next stream until it is answered or, for
a FACT_DELIVERY, acknowledged; the runner acknowledges a delivery once the
adapter's ``deliver`` returned, and remembers the last task ids it handled
(bounded) so a repeated task is neither answered nor delivered twice.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter, OrderedDict
from collections.abc import Iterable

import grpc
import structlog
from schakel.v1 import partner_pb2

from adapters.sdk._adapter import Adapter
from adapters.sdk._client import PartnerClient, RetryPolicy
from adapters.sdk._errors import PartnerRpcError
from adapters.sdk._subjects import decrypt_subject
from adapters.sdk.tracecontext import TraceContext
from policy.pseudonyms import DomainKey

log = structlog.get_logger(__name__)

FATAL = frozenset(
    {
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.UNIMPLEMENTED,
        grpc.StatusCode.INVALID_ARGUMENT,
    }
)
"""Stream failures that a reconnect cannot cure: wrong certificate, wrong node, bad request."""

REMEMBERED_TASKS = 10_000
"""Default bound on the task ids the runner remembers to recognise a repeated task."""

_DELIVERED = False
_DONE = True

_KIND_NAMES = {
    partner_pb2.TASK_KIND_HIT_QUERY: "hit_query",
    partner_pb2.TASK_KIND_FACT_QUERY: "fact_query",
    partner_pb2.TASK_KIND_FACT_DELIVERY: "fact_delivery",
}


class AdapterRunner:
    """Serves one adapter's tasks from the node until :meth:`stop`."""

    def __init__(
        self,
        client: PartnerClient,
        adapter: Adapter,
        *,
        keys: DomainKey,
        kinds: Iterable[partner_pb2.TaskKind.ValueType] = (),
        reconnect: RetryPolicy | None = None,
        concurrency: int = 8,
        remember: int = REMEMBERED_TASKS,
    ) -> None:
        """Prepare to serve; ``kinds`` limits the task kinds asked for (default: all).

        ``remember`` bounds the handled task ids kept to skip repeats; a repeat
        older than that is handled again (deliveries must be idempotent on the
        task id anyway, since a partner restart forgets them all).
        """
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if remember < 1:
            raise ValueError("remember must be at least 1")
        self._client = client
        self._adapter = adapter
        self._domain_key = keys.secret_key
        self._kinds = list(kinds)
        self._reconnect = reconnect or RetryPolicy(
            max_attempts=1_000_000, initial_backoff=0.2, max_backoff=30.0
        )
        self._slots = asyncio.Semaphore(concurrency)
        self._stopping = asyncio.Event()
        self._inflight: set[asyncio.Task[None]] = set()
        self._handling: set[str] = set()
        self._seen: OrderedDict[str, bool] = OrderedDict()
        """Task id -> _DONE (answered or acknowledged) or _DELIVERED (the adapter has it,
        the acknowledgement did not get through yet), oldest first."""
        self._remember = remember
        self.stats: Counter[str] = Counter()
        """Counts of ``answered.<kind>``, ``failed.<kind>``, ``lapsed``, ``repeated``,
        ``connects`` and ``disconnects``, for monitoring and tests."""
        self.connected = asyncio.Event()
        """Set while a task stream is requested; the node may not have accepted it yet."""

    def stop(self) -> None:
        """Ask :meth:`run` to return after the tasks in hand are answered."""
        self._stopping.set()

    async def run(self) -> None:
        """Receive and answer tasks, reconnecting with backoff, until :meth:`stop`.

        Raises :class:`PartnerRpcError` when the node refuses the stream for a
        reason a reconnect cannot cure (see :data:`FATAL`).
        """
        failures = 0
        try:
            while not self._stopping.is_set():
                received = await self._serve_stream()
                if self._stopping.is_set():
                    break
                failures = 0 if received else failures + 1
                delay = self._reconnect.backoff(max(failures, 1))
                log.info("task stream reconnecting", delay_s=round(delay, 3), failures=failures)
                stop_wait = asyncio.ensure_future(self._stopping.wait())
                try:
                    await asyncio.wait_for(asyncio.shield(stop_wait), timeout=delay)
                except TimeoutError:
                    stop_wait.cancel()
        finally:
            if self._inflight:
                await asyncio.gather(*self._inflight, return_exceptions=True)

    async def _serve_stream(self) -> int:
        """One stream's life; returns how many tasks it delivered."""
        received = 0
        stream = self._client.receive_tasks(self._kinds)
        stop_wait = asyncio.ensure_future(self._stopping.wait())
        try:
            self.stats["connects"] += 1
            self.connected.set()
            while True:
                next_task = asyncio.ensure_future(anext(stream))
                done, _ = await asyncio.wait(
                    {next_task, stop_wait}, return_when=asyncio.FIRST_COMPLETED
                )
                if next_task not in done:
                    next_task.cancel()
                    # Let the cancellation reach the stream before it is closed below.
                    await asyncio.gather(next_task, return_exceptions=True)
                    return received
                try:
                    task = next_task.result()
                except StopAsyncIteration:
                    log.info("task stream closed by the node")
                    return received
                received += 1
                if task.task_id in self._handling:
                    # Sent again on this stream while the first copy is in hand.
                    self.stats["repeated"] += 1
                    continue
                await self._slots.acquire()
                self._handling.add(task.task_id)
                job = asyncio.create_task(self._handle_guarded(task))
                self._inflight.add(job)
                job.add_done_callback(self._inflight.discard)
        except PartnerRpcError as exc:
            if exc.code in FATAL:
                raise
            log.warning("task stream broken", code=exc.code.name)
            return received
        finally:
            self.connected.clear()
            self.stats["disconnects"] += 1
            stop_wait.cancel()
            await stream.aclose()

    async def _handle_guarded(self, task: partner_pb2.PartnerTask) -> None:
        kind = _KIND_NAMES.get(task.kind, "unknown")
        try:
            await self.handle(task)
        except Exception as exc:
            # Whatever an adapter raises (a database down, a bad row) must neither
            # stop the runner nor reach a log with its message, which may quote data.
            self.stats[f"failed.{kind}"] += 1
            code = exc.code.name if isinstance(exc, PartnerRpcError) else type(exc).__name__
            log.warning("task failed", task_id=task.task_id, kind=kind, error=code)
        finally:
            self._handling.discard(task.task_id)
            self._slots.release()

    def _note(self, task_id: str, state: bool) -> None:
        self._seen[task_id] = state
        self._seen.move_to_end(task_id)
        while len(self._seen) > self._remember:
            self._seen.popitem(last=False)

    async def handle(self, task: partner_pb2.PartnerTask) -> None:
        """Answer one task (also usable without a stream, e.g. in tests or batch jobs).

        A task id answered or acknowledged before is skipped; a delivery the
        adapter already took is only acknowledged again.
        """
        kind = _KIND_NAMES.get(task.kind)
        if kind is None:
            raise ValueError(f"task of unknown kind {task.kind}")
        seen = self._seen.get(task.task_id)
        if seen is _DONE:
            self.stats["repeated"] += 1
            log.info("task repeated, already handled", task_id=task.task_id, kind=kind)
            return
        if task.HasField("deadline") and task.deadline.ToMicroseconds() / 1e6 < time.time():
            self.stats["lapsed"] += 1
            log.info("task lapsed before it was handled", task_id=task.task_id, kind=kind)
            return
        if task.kind == partner_pb2.TASK_KIND_FACT_DELIVERY:
            if seen is None:
                pseudonym = decrypt_subject(task.subject, self._domain_key)
                await asyncio.to_thread(self._adapter.deliver, pseudonym, task)
                self._note(task.task_id, _DELIVERED)
            else:
                self.stats["repeated"] += 1
            await self._acknowledge(task)
        else:
            pseudonym = decrypt_subject(task.subject, self._domain_key)
            if task.kind == partner_pb2.TASK_KIND_HIT_QUERY:
                contact = await asyncio.to_thread(self._adapter.known, pseudonym)
                await self._client.answer_hit(
                    task, known=contact is not None, contact_handle=contact or ""
                )
            else:
                asked = list(task.categories)
                facts = await asyncio.to_thread(self._adapter.facts, pseudonym, asked)
                await self._client.answer_facts(task, [f for f in facts if f.category in asked])
        self._note(task.task_id, _DONE)
        self.stats[f"answered.{kind}"] += 1
        log.info("task answered", task_id=task.task_id, kind=kind)

    async def _acknowledge(self, task: partner_pb2.PartnerTask) -> None:
        try:
            await self._client.acknowledge_task(
                task.task_id, trace=TraceContext.from_proto(task.trace)
            )
        except PartnerRpcError as exc:
            if exc.code is not grpc.StatusCode.NOT_FOUND:
                raise
            # Acknowledged before (a lost reply) or past its deadline: nothing left to do.
            log.info("delivery no longer open at the node", task_id=task.task_id)
