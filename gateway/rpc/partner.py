"""PartnerService: what a node serves to the partner systems of its region.

Transport only. Each RPC takes the caller from its verified certificate,
hands the request to its flow and builds the reply:

- Pseudonymise (partners build their pseudonym index): :mod:`gateway.flows.pseudonymise`;
- SubmitReferral (aanmelding): :mod:`gateway.flows.aanmelding`;
- GetCaseStatus: :mod:`gateway.flows.status`;
- ReceiveTasks, AnswerHit, AnswerFacts, AcknowledgeTask (the task stream of
  the case flow, gateway/FLOW.md): :mod:`gateway.flows.answers`.

A flow refuses by raising a :class:`~gateway.errors.SchakelError`; the
interceptor records the refusal and answers it (:mod:`gateway.rpc.status`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import grpc
from schakel.v1 import partner_pb2, partner_pb2_grpc

from gateway.flows import answers
from gateway.flows.aanmelding import submit_referral
from gateway.flows.pseudonymise import pseudonymise
from gateway.flows.status import case_status_for
from gateway.rpc.auth import current_identity
from gateway.tracing import current_trace_proto

if TYPE_CHECKING:
    from gateway.parts import NodeParts

Context = grpc.aio.ServicerContext[Any, Any]


class PartnerService(partner_pb2_grpc.PartnerServiceServicer):
    """The partner-facing endpoint of a node."""

    def __init__(self, parts: NodeParts) -> None:
        self.parts = parts

    async def Pseudonymise(  # noqa: N802 - gRPC method name
        self, request: partner_pb2.PseudonymiseRequest, context: Context
    ) -> partner_pb2.PseudonymiseResponse:
        """Transcrypt subjects under Y to the caller's own domain (the node never decrypts)."""
        moved = await pseudonymise(self.parts, current_identity(), request)
        return partner_pb2.PseudonymiseResponse(subjects=moved)

    async def SubmitReferral(  # noqa: N802 - gRPC method name
        self, request: partner_pb2.SubmitReferralRequest, context: Context
    ) -> partner_pb2.SubmitReferralResponse:
        """Open a case (aanmelding) under policy; idempotent on the idempotency key."""
        submitted = await submit_referral(self.parts, current_identity(), request)
        return partner_pb2.SubmitReferralResponse(
            case_ref=submitted.case_ref, created=submitted.created, trace=current_trace_proto()
        )

    async def GetCaseStatus(  # noqa: N802 - gRPC method name
        self, request: partner_pb2.GetCaseStatusRequest, context: Context
    ) -> partner_pb2.CaseStatus:
        """The status of a case the caller referred or takes part in."""
        return await case_status_for(self.parts, current_identity(), request)

    async def ReceiveTasks(  # noqa: N802 - gRPC method name
        self, request: partner_pb2.ReceiveTasksRequest, context: Context
    ) -> AsyncIterator[partner_pb2.PartnerTask]:
        """Stream the caller's tasks (its organisation comes from the certificate)."""
        caller = current_identity()
        kinds = answers.task_kinds(request.kinds)
        async for task in self.parts.tasks.stream(caller.org_id, kinds):
            yield task

    async def AnswerHit(  # noqa: N802 - gRPC method name
        self, request: partner_pb2.AnswerHitRequest, context: Context
    ) -> partner_pb2.AnswerAck:
        """Take a hit/no-hit answer to one of the caller's tasks."""
        await answers.answer_hit(self.parts, current_identity(), request)
        return partner_pb2.AnswerAck(task_id=request.task_id, trace=current_trace_proto())

    async def AnswerFacts(  # noqa: N802 - gRPC method name
        self, request: partner_pb2.AnswerFactsRequest, context: Context
    ) -> partner_pb2.AnswerAck:
        """Take an uitvraag answer to one of the caller's tasks."""
        await answers.answer_facts(self.parts, current_identity(), request)
        return partner_pb2.AnswerAck(task_id=request.task_id, trace=current_trace_proto())

    async def AcknowledgeTask(  # noqa: N802 - gRPC method name
        self, request: partner_pb2.AcknowledgeTaskRequest, context: Context
    ) -> partner_pb2.AnswerAck:
        """Settle a FACT_DELIVERY the caller has stored, so it is never sent again."""
        await answers.acknowledge(self.parts, current_identity(), request.task_id)
        return partner_pb2.AnswerAck(task_id=request.task_id, trace=current_trace_proto())
