"""FederationService: what a node serves to other nodes and to the national collector.

Served here: checkpoint witnessing (AddCheckpoint) and aggregate signals
(GetSignals). Federated hit/no-hit, uitvraag and case transfer belong to the
case flow (#6) and still answer UNIMPLEMENTED through the stand-in.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import grpc
from schakel.v1 import federation_pb2

from gateway.audit.witness import (
    BadProofError,
    BadRequestError,
    ConflictError,
    UnknownLogError,
    WitnessError,
)
from gateway.auth import current_identity
from gateway.crossing import Crossing, commit, refuse
from gateway.services import UnimplementedFederationService
from gateway.signals.answer import SignalsRequestError, get_signals, signals_audit

if TYPE_CHECKING:
    from gateway.node import NodeParts

Context = grpc.aio.ServicerContext[Any, Any]

WITNESS_SIZE_KEY = "schakel-witness-size"
"""Trailing metadata on a witness conflict: the size the witness holds (C2SP 409)."""

_WITNESS_CODES: dict[type[WitnessError], grpc.StatusCode] = {
    UnknownLogError: grpc.StatusCode.NOT_FOUND,
    BadRequestError: grpc.StatusCode.INVALID_ARGUMENT,
    BadProofError: grpc.StatusCode.INVALID_ARGUMENT,
}


class FederationService(UnimplementedFederationService):
    """The node's federation endpoint."""

    def __init__(self, parts: NodeParts) -> None:
        self.parts = parts

    async def AddCheckpoint(  # noqa: N802 - gRPC method name
        self, request: federation_pb2.AddCheckpointRequest, context: Context
    ) -> federation_pb2.AddCheckpointResponse:
        """Witness a peer's checkpoint: consistency from what we saw, CAS, cosign."""
        caller = current_identity()
        try:
            line = await asyncio.to_thread(
                self.parts.witness.add_checkpoint,
                request.checkpoint,
                request.old_size,
                list(request.consistency_proof),
                caller.node_id,
            )
        except ConflictError as exc:
            context.set_trailing_metadata(((WITNESS_SIZE_KEY, str(exc.current_size)),))
            await context.abort(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"witness has size {exc.current_size} for this log, not {request.old_size}",
            )
        except WitnessError as exc:
            code = _WITNESS_CODES.get(type(exc), grpc.StatusCode.INVALID_ARGUMENT)
            await context.abort(code, str(exc))
        return federation_pb2.AddCheckpointResponse(cosignature=line)

    def _activity_uri(self, activity_id: str) -> str:
        """The register URI of an activity from the policy in force ("" without one)."""
        if self.parts.policy is None:
            return ""
        activity = self.parts.policy.evaluator.policy.bundle.activities.get(activity_id)
        return activity.uri if activity is not None else ""

    async def GetSignals(  # noqa: N802 - gRPC method name
        self, request: federation_pb2.SignalsRequest, context: Context
    ) -> federation_pb2.SignalsResponse:
        """Suppressed aggregate counts for a period; audited under the signalling activity."""
        refused = signals_audit(answered=False)
        crossing = Crossing(
            name="schakel.v1.FederationService/GetSignals",
            caller=current_identity(),
            activity=refused.activity_id,
            activity_uri=self._activity_uri(refused.activity_id),
            categories=refused.categories,
            decision=refused.decision(),
        )
        try:
            response = await get_signals(request, self.parts.engine, self.parts.node_id)
        except SignalsRequestError as exc:
            await refuse(self.parts.audit, crossing, context, exc.code, str(exc))
        crossing.decision = signals_audit(answered=True).decision()
        await commit(self.parts.audit, crossing, context)
        return response
