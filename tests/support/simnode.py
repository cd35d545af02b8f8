"""A simulated node: PartnerService as a real grpc.aio server over mTLS on loopback.

The real node does not serve PartnerService yet; this simulator stands in for
it with its own state. It reads the caller's organisation from the verified
client certificate, transcrypts subjects with a real Transcryptor, hands out
tasks whose subjects are transcrypted to the caller's domain and rerandomised,
and records every answer. Fault injection: ``fail_next`` answers the next
calls of a method with a status code; ``drop_streams`` ends the open streams.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections import defaultdict, deque
from dataclasses import dataclass, field
from typing import Any

import grpc
import grpc.aio
from cryptography import x509
from google.protobuf import timestamp_pb2
from schakel.v1 import common_pb2, partner_pb2, partner_pb2_grpc

from certs.identity import PeerKind, identity_from_certificate
from policy.pseudonyms import Ciphertext, FederationKeys, PseudonymError, encrypt, subject_point

NODE_ID = "zvh-rotterdam"
PURPOSE = "zvh.complexe-casuistiek"


@dataclass
class Recorded:
    """What the simulator saw, for assertions."""

    hits: dict[str, partner_pb2.AnswerHitRequest] = field(default_factory=dict)
    facts: dict[str, partner_pb2.AnswerFactsRequest] = field(default_factory=dict)
    referrals: dict[str, partner_pb2.SubmitReferralRequest] = field(default_factory=dict)
    acks: defaultdict[str, int] = field(default_factory=lambda: defaultdict(int))
    """Task id -> how often AcknowledgeTask was called for it."""
    traceparents: list[tuple[str, str]] = field(default_factory=list)
    calls: defaultdict[str, int] = field(default_factory=lambda: defaultdict(int))


class SimulatedNode(partner_pb2_grpc.PartnerServiceServicer):
    """PartnerService with tasks queued per organisation."""

    def __init__(self, keys: FederationKeys) -> None:
        self.keys = keys
        self.transcryptor = keys.transcryptor_keys().transcryptor()
        self.recorded = Recorded()
        self.fail_next: dict[str, deque[grpc.StatusCode]] = defaultdict(deque)
        self.lose_reply: defaultdict[str, int] = defaultdict(int)
        """Method -> how many of its next calls do their work and then fail UNAVAILABLE,
        as when the reply is lost on the way back."""
        self._queues: dict[str, asyncio.Queue[partner_pb2.PartnerTask | None]] = {}
        self._tasks: dict[str, tuple[str, partner_pb2.PartnerTask]] = {}
        self._cases: dict[str, str] = {}
        self.streams_opened = 0

    def _queue(self, org: str) -> asyncio.Queue[partner_pb2.PartnerTask | None]:
        return self._queues.setdefault(org, asyncio.Queue())

    async def _caller(self, method: str, context: grpc.aio.ServicerContext[Any, Any]) -> str:
        self.recorded.calls[method] += 1
        meta = dict(context.invocation_metadata() or ())
        self.recorded.traceparents.append((method, str(meta.get("traceparent", ""))))
        pem = context.auth_context().get("x509_pem_cert")
        if not pem:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "no client certificate")
        identity = identity_from_certificate(x509.load_pem_x509_certificate(next(iter(pem))))
        if identity.kind is not PeerKind.PARTNER or identity.node_id != NODE_ID:
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, "not a partner of this node")
        if self.fail_next[method]:
            await context.abort(self.fail_next[method].popleft(), "simulated fault")
        return identity.org_id

    async def _maybe_lose_reply(
        self, method: str, context: grpc.aio.ServicerContext[Any, Any]
    ) -> None:
        if self.lose_reply[method] > 0:
            self.lose_reply[method] -= 1
            await context.abort(grpc.StatusCode.UNAVAILABLE, "simulated lost reply")

    def queue_task(
        self,
        org: str,
        kind: partner_pb2.TaskKind.ValueType,
        *,
        id_type: str = "bsn",
        id_value: str,
        categories: tuple[str, ...] = (),
        facts: tuple[common_pb2.Fact, ...] = (),
        deadline_s: float = 30.0,
        subject_domain: str | None = None,
    ) -> str:
        """Queue a task for ``org`` about an identifier; returns its id.

        The subject is encrypted under Y here (as a referring partner would)
        and transcrypted to ``org``'s domain, like the node does (or, to
        simulate a faulty node, to ``subject_domain``).
        """
        fresh = encrypt(subject_point(id_type, id_value), self.keys.global_public_key)
        subject = self.transcryptor.transcrypt(fresh, subject_domain or org).to_proto()
        deadline = timestamp_pb2.Timestamp()
        deadline.FromDatetime(dt.datetime.now(dt.UTC) + dt.timedelta(seconds=deadline_s))
        task_id = uuid.uuid4().hex
        task = partner_pb2.PartnerTask(
            task_id=task_id,
            kind=kind,
            purpose=common_pb2.Purpose(processing_activity_id=PURPOSE),
            case_ref=common_pb2.CaseRef(node_id=NODE_ID, case_id="case-1"),
            phase=common_pb2.PHASE_CASUSOVERLEG,
            subject=subject,
            categories=list(categories),
            facts=list(facts),
            deadline=deadline,
            trace=common_pb2.TraceContext(trace_id=uuid.uuid4().hex, span_id=uuid.uuid4().hex[:16]),
        )
        self._tasks[task_id] = (org, task)
        self._queue(org).put_nowait(task)
        return task_id

    def send_again(self, task_id: str) -> None:
        """Queue a task already queued once, as the node does on a reconnect."""
        org, task = self._tasks[task_id]
        self._queue(org).put_nowait(task)

    def drop_streams(self) -> None:
        """End every open task stream, as a node restart would."""
        for queue in self._queues.values():
            queue.put_nowait(None)

    async def ReceiveTasks(self, request, context):  # type: ignore[no-untyped-def]
        org = await self._caller("ReceiveTasks", context)
        self.streams_opened += 1
        queue = self._queue(org)
        kinds = set(request.kinds)
        while True:
            task = await queue.get()
            if task is None:
                return
            if kinds and task.kind not in kinds:
                continue
            yield task

    async def _check_task(
        self, org: str, task_id: str, context: grpc.aio.ServicerContext[Any, Any]
    ) -> partner_pb2.PartnerTask:
        owner, task = self._tasks.get(task_id, ("", partner_pb2.PartnerTask()))
        if owner != org:
            await context.abort(grpc.StatusCode.NOT_FOUND, "no such task for this caller")
        return task

    async def AnswerHit(self, request, context):  # type: ignore[no-untyped-def]
        org = await self._caller("AnswerHit", context)
        await self._check_task(org, request.task_id, context)
        self.recorded.hits[request.task_id] = request
        await self._maybe_lose_reply("AnswerHit", context)
        return partner_pb2.AnswerAck(task_id=request.task_id)

    async def AnswerFacts(self, request, context):  # type: ignore[no-untyped-def]
        org = await self._caller("AnswerFacts", context)
        task = await self._check_task(org, request.task_id, context)
        if {f.category for f in request.facts} - set(task.categories):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "category not asked for")
        self.recorded.facts[request.task_id] = request
        return partner_pb2.AnswerAck(task_id=request.task_id)

    async def AcknowledgeTask(self, request, context):  # type: ignore[no-untyped-def]
        org = await self._caller("AcknowledgeTask", context)
        task = await self._check_task(org, request.task_id, context)
        if task.kind != partner_pb2.TASK_KIND_FACT_DELIVERY:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "not a delivery")
        self.recorded.acks[request.task_id] += 1
        await self._maybe_lose_reply("AcknowledgeTask", context)
        return partner_pb2.AnswerAck(task_id=request.task_id)

    async def Pseudonymise(self, request, context):  # type: ignore[no-untyped-def]
        org = await self._caller("Pseudonymise", context)
        if not 1 <= len(request.subjects) <= 1000:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "1 to 1000 subjects")
        try:
            out = [
                self.transcryptor.transcrypt(Ciphertext.from_proto(s), org).to_proto()
                for s in request.subjects
            ]
        except PseudonymError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        return partner_pb2.PseudonymiseResponse(subjects=out)

    async def SubmitReferral(self, request, context):  # type: ignore[no-untyped-def]
        org = await self._caller("SubmitReferral", context)
        key = f"{org}/{request.idempotency_key}"
        created = key not in self._cases
        if created:
            self._cases[key] = f"case-{len(self._cases) + 1}"
            self.recorded.referrals[key] = request
        await self._maybe_lose_reply("SubmitReferral", context)
        return partner_pb2.SubmitReferralResponse(
            case_ref=common_pb2.CaseRef(node_id=NODE_ID, case_id=self._cases[key]),
            created=created,
        )

    async def GetCaseStatus(self, request, context):  # type: ignore[no-untyped-def]
        await self._caller("GetCaseStatus", context)
        if request.case_ref.case_id not in self._cases.values():
            await context.abort(grpc.StatusCode.NOT_FOUND, "no such case")
        return partner_pb2.CaseStatus(
            case_ref=request.case_ref,
            phase=common_pb2.PHASE_AANMELDING,
            theme="complexe-casuistiek",
        )
