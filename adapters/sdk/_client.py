"""The partner client: a typed asyncio client for a node's PartnerService over mTLS.

Every unary call has a deadline and is retried with exponential backoff (full
jitter) on transient failures, because every one of them is safe to repeat:
SubmitReferral carries an idempotency key that the client makes once per
logical referral and reuses on each attempt; AnswerHit, AnswerFacts and
AcknowledgeTask are keyed by the task id; GetCaseStatus and Pseudonymise
change nothing. Each
logical call is one W3C trace and each attempt a span of it, sent as
``traceparent`` metadata. Failures surface as :class:`PartnerRpcError`.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import AsyncGenerator, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import grpc
import grpc.aio
import structlog
from google.protobuf.message import Message
from schakel.v1 import common_pb2, partner_pb2, partner_pb2_grpc

from adapters.sdk._errors import PartnerRpcError
from adapters.sdk.tracecontext import TraceContext

log = structlog.get_logger(__name__)

MAX_PSEUDONYMISE_BATCH = 1000
MAX_IDEMPOTENCY_KEY = 128
RETRYABLE = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.ABORTED,
    }
)
"""Codes that say "try again later"; everything else is the caller's or the node's verdict."""

_Req = TypeVar("_Req", bound=Message)
_Resp = TypeVar("_Resp", bound=Message)
_jitter = random.SystemRandom()


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter: attempt n waits up to initial * multiplier**n."""

    max_attempts: int = 5
    initial_backoff: float = 0.1
    max_backoff: float = 5.0
    multiplier: float = 2.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if not 0 < self.initial_backoff <= self.max_backoff:
            raise ValueError("backoffs must satisfy 0 < initial_backoff <= max_backoff")
        if self.multiplier < 1:
            raise ValueError("multiplier must be at least 1")

    def backoff(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        cap = min(self.max_backoff, self.initial_backoff * self.multiplier ** (attempt - 1))
        return _jitter.uniform(0, cap)


def new_idempotency_key() -> str:
    """A fresh idempotency key for one logical referral."""
    return uuid.uuid4().hex


def _purpose(processing_activity_id: str) -> common_pb2.Purpose:
    if not processing_activity_id:
        raise ValueError("purpose (the processing activity id) is required")
    return common_pb2.Purpose(processing_activity_id=processing_activity_id)


class PartnerClient:
    """An asyncio client for PartnerService on the partner's own node.

    Use :meth:`connect` (PEM bytes) or :meth:`from_files`; close with
    ``await client.close()`` or ``async with``.
    """

    def __init__(
        self,
        channel: grpc.aio.Channel,
        *,
        timeout: float = 10.0,
        retry: RetryPolicy | None = None,
    ) -> None:
        """Wrap an open channel; ``timeout`` is the default deadline of a logical call."""
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        self._channel = channel
        self._stub = partner_pb2_grpc.PartnerServiceStub(channel)
        self.timeout = timeout
        self.retry = retry or RetryPolicy()

    @classmethod
    def connect(
        cls,
        target: str,
        *,
        certificate_chain: bytes,
        private_key: bytes,
        root_certificates: bytes,
        server_name: str | None = None,
        timeout: float = 10.0,
        retry: RetryPolicy | None = None,
    ) -> PartnerClient:
        """Open an mTLS channel to ``target`` (host:port) with the partner's cert and key.

        ``root_certificates`` is the federation CA; ``server_name`` overrides
        the name checked against the node certificate (default: the host).
        """
        credentials = grpc.ssl_channel_credentials(
            root_certificates=root_certificates,
            private_key=private_key,
            certificate_chain=certificate_chain,
        )
        # Pings keep an idle task stream alive through NAT and firewalls. A gRPC
        # server by default answers pings more often than every 5 minutes with
        # GOAWAY (too_many_pings), which would break the stream it should protect.
        options: list[tuple[str, str | int]] = [("grpc.keepalive_time_ms", 300_000)]
        if server_name:
            options.append(("grpc.ssl_target_name_override", server_name))
        channel = grpc.aio.secure_channel(target, credentials, options=options)
        return cls(channel, timeout=timeout, retry=retry)

    @classmethod
    def from_files(
        cls,
        target: str,
        *,
        cert_file: Path,
        key_file: Path,
        ca_file: Path,
        server_name: str | None = None,
        timeout: float = 10.0,
        retry: RetryPolicy | None = None,
    ) -> PartnerClient:
        """Like :meth:`connect`, reading the PEM files."""
        return cls.connect(
            target,
            certificate_chain=cert_file.read_bytes(),
            private_key=key_file.read_bytes(),
            root_certificates=ca_file.read_bytes(),
            server_name=server_name,
            timeout=timeout,
            retry=retry,
        )

    async def close(self) -> None:
        """Close the channel; open streams end."""
        await self._channel.close(grace=None)

    async def __aenter__(self) -> PartnerClient:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()

    async def _call(
        self,
        method: str,
        rpc: grpc.aio.UnaryUnaryMultiCallable[_Req, _Resp],
        request: _Req,
        *,
        timeout: float | None,
        trace: TraceContext | None,
    ) -> _Resp:
        loop = asyncio.get_running_loop()
        parent = trace or TraceContext.new()
        deadline = loop.time() + (timeout if timeout is not None else self.timeout)
        attempt = 0
        while True:
            attempt += 1
            remaining = deadline - loop.time()
            span = parent.child()
            try:
                if remaining <= 0:
                    raise PartnerRpcError(
                        method,
                        grpc.StatusCode.DEADLINE_EXCEEDED,
                        "the call's deadline passed before the node answered",
                        attempts=attempt - 1,
                        trace_id=parent.trace_id,
                    )
                return await rpc(request, timeout=remaining, metadata=span.metadata())
            except grpc.aio.AioRpcError as exc:
                code, details = exc.code(), exc.details() or ""
            delay = self.retry.backoff(attempt)
            if (
                code not in RETRYABLE
                or attempt >= self.retry.max_attempts
                or loop.time() + delay >= deadline
            ):
                raise PartnerRpcError(
                    method, code, details, attempts=attempt, trace_id=parent.trace_id
                )
            log.info(
                "partner call retried",
                method=method,
                code=code.name,
                attempt=attempt,
                delay_s=round(delay, 3),
                trace_id=parent.trace_id,
            )
            await asyncio.sleep(delay)

    async def submit_referral(
        self,
        *,
        purpose: str,
        subject: common_pb2.EncryptedPseudonym,
        theme: str,
        external_ref: str,
        criteria: Iterable[str] = (),
        reason_codes: Iterable[str] = (),
        idempotency_key: str | None = None,
        timeout: float | None = None,
        trace: TraceContext | None = None,
    ) -> partner_pb2.SubmitReferralResponse:
        """Refer a subject (aanmelding); returns the case and whether it was created.

        Pass your own ``idempotency_key`` (e.g. stored with your referral) to
        make a retry safe across restarts too; otherwise one is made here and
        reused for every attempt of this call.
        """
        key = idempotency_key if idempotency_key is not None else new_idempotency_key()
        if not key or len(key) > MAX_IDEMPOTENCY_KEY:
            raise ValueError(f"idempotency_key must be 1-{MAX_IDEMPOTENCY_KEY} characters")
        if not theme:
            raise ValueError("theme is required")
        if not external_ref:
            raise ValueError("external_ref is required")
        request = partner_pb2.SubmitReferralRequest(
            idempotency_key=key,
            purpose=_purpose(purpose),
            subject=subject,
            theme=theme,
            criteria=list(criteria),
            reason_codes=list(reason_codes),
            external_ref=external_ref,
        )
        return await self._call(
            "SubmitReferral", self._stub.SubmitReferral, request, timeout=timeout, trace=trace
        )

    async def get_case_status(
        self,
        *,
        purpose: str,
        case_ref: common_pb2.CaseRef,
        timeout: float | None = None,
        trace: TraceContext | None = None,
    ) -> partner_pb2.CaseStatus:
        """The phase, the regie's contact and the caller's own participation in a case it is in."""
        if not case_ref.node_id or not case_ref.case_id:
            raise ValueError("case_ref needs both node_id and case_id")
        request = partner_pb2.GetCaseStatusRequest(purpose=_purpose(purpose), case_ref=case_ref)
        return await self._call(
            "GetCaseStatus", self._stub.GetCaseStatus, request, timeout=timeout, trace=trace
        )

    async def receive_tasks(
        self,
        kinds: Iterable[partner_pb2.TaskKind.ValueType] = (),
        *,
        trace: TraceContext | None = None,
    ) -> AsyncGenerator[partner_pb2.PartnerTask, None]:
        """Yield tasks from the node as they come; the stream has no deadline.

        Ends when the node closes the stream; a broken stream raises
        :class:`PartnerRpcError` (:class:`~adapters.sdk.AdapterRunner`
        reconnects with backoff).
        """
        parent = trace or TraceContext.new()
        call = self._stub.ReceiveTasks(
            partner_pb2.ReceiveTasksRequest(kinds=list(kinds)),
            metadata=parent.child().metadata(),
        )
        try:
            async for task in call:
                yield task
        except grpc.aio.AioRpcError as exc:
            raise PartnerRpcError(
                "ReceiveTasks",
                exc.code(),
                exc.details() or "",
                attempts=1,
                trace_id=parent.trace_id,
            ) from None
        finally:
            call.cancel()

    def _task_timeout(self, task: partner_pb2.PartnerTask, timeout: float | None) -> float:
        # An answer after the task's deadline is refused anyway, so don't wait past it.
        budget = timeout if timeout is not None else self.timeout
        if task.HasField("deadline"):
            left = task.deadline.ToMicroseconds() / 1e6 - time.time()
            budget = min(budget, max(left, 0.0))
        return budget

    async def answer_hit(
        self,
        task: partner_pb2.PartnerTask,
        *,
        known: bool,
        contact_handle: str = "",
        timeout: float | None = None,
    ) -> partner_pb2.AnswerAck:
        """Answer a HIT_QUERY task; a contact handle is required when known, forbidden if not."""
        if task.kind != partner_pb2.TASK_KIND_HIT_QUERY:
            raise ValueError("answer_hit answers a HIT_QUERY task only")
        if known and not contact_handle:
            raise ValueError("a known subject needs a contact handle")
        if not known and contact_handle:
            raise ValueError("an unknown subject must not get a contact handle")
        request = partner_pb2.AnswerHitRequest(
            task_id=task.task_id,
            purpose=task.purpose,
            case_ref=task.case_ref,
            known=known,
            contact_handle=contact_handle,
        )
        return await self._call(
            "AnswerHit",
            self._stub.AnswerHit,
            request,
            timeout=self._task_timeout(task, timeout),
            trace=TraceContext.from_proto(task.trace),
        )

    async def answer_facts(
        self,
        task: partner_pb2.PartnerTask,
        facts: Sequence[common_pb2.Fact],
        *,
        timeout: float | None = None,
    ) -> partner_pb2.AnswerAck:
        """Answer a FACT_QUERY task; a fact of a category not asked for is refused here."""
        if task.kind != partner_pb2.TASK_KIND_FACT_QUERY:
            raise ValueError("answer_facts answers a FACT_QUERY task only")
        asked = set(task.categories)
        extra = sorted({f.category for f in facts} - asked)
        if extra:
            raise ValueError(f"facts of categories not asked for: {extra}")
        request = partner_pb2.AnswerFactsRequest(
            task_id=task.task_id, purpose=task.purpose, case_ref=task.case_ref, facts=list(facts)
        )
        return await self._call(
            "AnswerFacts",
            self._stub.AnswerFacts,
            request,
            timeout=self._task_timeout(task, timeout),
            trace=TraceContext.from_proto(task.trace),
        )

    async def acknowledge_task(
        self,
        task_id: str,
        *,
        timeout: float | None = None,
        trace: TraceContext | None = None,
    ) -> partner_pb2.AnswerAck:
        """Acknowledge a FACT_DELIVERY once it is stored, so the node stops sending it.

        Until then the node sends the delivery again on every new task stream.
        NOT_FOUND means the node holds no open delivery by this id: acknowledged
        before (e.g. by an attempt whose reply was lost) or past its deadline.
        Pass ``trace=TraceContext.from_proto(task.trace)`` to continue the task's trace.
        """
        if not task_id:
            raise ValueError("task_id is required")
        request = partner_pb2.AcknowledgeTaskRequest(task_id=task_id)
        return await self._call(
            "AcknowledgeTask", self._stub.AcknowledgeTask, request, timeout=timeout, trace=trace
        )

    async def pseudonymise(
        self,
        subjects: Sequence[common_pb2.EncryptedPseudonym],
        *,
        purpose: str,
        timeout: float | None = None,
    ) -> list[common_pb2.EncryptedPseudonym]:
        """Transcrypt subjects under Y to the caller's domain, in order, in batches of 1000."""
        out: list[common_pb2.EncryptedPseudonym] = []
        trace = TraceContext.new()
        for start in range(0, len(subjects), MAX_PSEUDONYMISE_BATCH):
            batch = subjects[start : start + MAX_PSEUDONYMISE_BATCH]
            request = partner_pb2.PseudonymiseRequest(purpose=_purpose(purpose), subjects=batch)
            response = await self._call(
                "Pseudonymise", self._stub.Pseudonymise, request, timeout=timeout, trace=trace
            )
            if len(response.subjects) != len(batch):
                raise PartnerRpcError(
                    "Pseudonymise",
                    grpc.StatusCode.INTERNAL,
                    f"the node answered {len(response.subjects)} subjects for {len(batch)}",
                    attempts=1,
                    trace_id=trace.trace_id,
                )
            out.extend(response.subjects)
        return out
