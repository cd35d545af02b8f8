"""FederationService: what a node serves to other nodes and to the national collector.

Served here: checkpoint witnessing (AddCheckpoint) and aggregate signals
(GetSignals). Federated hit/no-hit, uitvraag and case transfer belong to the
case flow (#6) and still answer UNIMPLEMENTED through the stand-in.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import grpc
from schakel.v1 import federation_pb2

from gateway.audit.witness import add_checkpoint_rpc
from gateway.auth import current_identity
from gateway.crossing import Crossing, commit, refuse
from gateway.services import UnimplementedFederationService
from gateway.signals.answer import SignalsRequestError, get_signals, signals_audit

if TYPE_CHECKING:
    from gateway.node import NodeParts

Context = grpc.aio.ServicerContext[Any, Any]


class FederationService(UnimplementedFederationService):
    """The node's federation endpoint."""

    def __init__(self, parts: NodeParts) -> None:
        self.parts = parts

    async def AddCheckpoint(  # noqa: N802 - gRPC method name
        self, request: federation_pb2.AddCheckpointRequest, context: Context
    ) -> federation_pb2.AddCheckpointResponse:
        """Witness a peer's checkpoint: consistency from what we saw, CAS, cosign."""
        return await add_checkpoint_rpc(
            self.parts.witness, request, context, current_identity().node_id
        )

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
