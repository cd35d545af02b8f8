"""FederationService: what a node serves to other nodes and to the national collector.

Served here: federated hit/no-hit (HitNoHit, :mod:`gateway.flows.hit_answer`),
facts this node holds in its own case (RequestFacts,
:mod:`gateway.flows.release`), uitvraag of and delivery to this node's
partners that take part in a peer's case (AskParticipant, DeliverFacts,
:mod:`gateway.flows.peer_uitvraag`), the case links those calls are checked
against (LinkCase, :mod:`gateway.flows.links`), case transfer (TransferCase,
:mod:`gateway.flows.overname`), checkpoint witnessing (AddCheckpoint) and
aggregate signals (GetSignals, :mod:`gateway.flows.signalering`).

The interceptor admits only node certificates (the collector for
GetSignals, transcryptors too for AddCheckpoint); when the node has a
signed directory, the case-flow calls also require the caller to be listed
in it. Subjects arrive transcrypted to this
node's own domain. Every answer waits for its durable audit record; a
refusal is raised by the flow and answered, audited, by the interceptor.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import grpc
from schakel.v1 import common_pb2, federation_pb2, federation_pb2_grpc

from certs.identity import PeerKind
from gateway.audit.witness import add_checkpoint_rpc
from gateway.flows.hit_answer import answer_hit
from gateway.flows.links import take_link
from gateway.flows.overname import take_over
from gateway.flows.peer_uitvraag import ask_participant, deliver_facts
from gateway.flows.release import request_facts
from gateway.flows.signalering import answer_signals
from gateway.rpc.auth import current_identity
from gateway.tracing import current_trace_proto

if TYPE_CHECKING:
    from gateway.parts import NodeParts

Context = grpc.aio.ServicerContext[Any, Any]


class FederationService(federation_pb2_grpc.FederationServiceServicer):
    """The node's federation endpoint."""

    def __init__(self, parts: NodeParts) -> None:
        self.parts = parts

    async def AddCheckpoint(  # noqa: N802 - gRPC method name
        self, request: federation_pb2.AddCheckpointRequest, context: Context
    ) -> federation_pb2.AddCheckpointResponse:
        """Witness a peer's or a transcryptor's checkpoint: consistency from what we saw, CAS,
        cosign. A caller submits its own log only: a transcryptor's log is named by its id."""
        caller = current_identity()
        origin = caller.org_id if caller.kind is PeerKind.TRANSCRYPTOR else caller.node_id
        return await add_checkpoint_rpc(self.parts.witness, request, context, origin)

    async def GetSignals(  # noqa: N802 - gRPC method name
        self, request: federation_pb2.SignalsRequest, context: Context
    ) -> federation_pb2.SignalsResponse:
        """Suppressed aggregate counts for a period; audited under the signalling activity."""
        return await answer_signals(self.parts, current_identity(), request)

    async def HitNoHit(  # noqa: N802 - gRPC method name
        self, request: federation_pb2.FederatedHitRequest, context: Context
    ) -> federation_pb2.FederatedHitResponse:
        """Is the subject in an active case here? A hit gives the contact handle, nothing else."""
        answer = await answer_hit(self.parts, current_identity(), request)
        return federation_pb2.FederatedHitResponse(
            hit=answer.hit, contact_handle=answer.contact_handle, trace=current_trace_proto()
        )

    async def RequestFacts(  # noqa: N802 - gRPC method name
        self, request: federation_pb2.FederatedFactsRequest, context: Context
    ) -> federation_pb2.FederatedFactsResponse:
        """Facts this node holds on the subject's active case, as far as its policy allows."""
        facts, summary = await request_facts(self.parts, current_identity(), request)
        return federation_pb2.FederatedFactsResponse(
            facts=facts, decision=summary, trace=current_trace_proto()
        )

    async def AskParticipant(  # noqa: N802 - gRPC method name
        self, request: federation_pb2.AskParticipantRequest, context: Context
    ) -> federation_pb2.AskParticipantResponse:
        """Put a peer case's uitvraag to one of this node's partners; release under our policy."""
        asked = await ask_participant(self.parts, current_identity(), request)
        response = federation_pb2.AskParticipantResponse(
            answered=asked.answered, trace=current_trace_proto()
        )
        for release in asked.releases:
            response.releases.add(
                recipient_org_type=release.recipient_org_type,
                facts=release.facts,
                decision=release.decision.to_proto(),
            )
        return response

    async def DeliverFacts(  # noqa: N802 - gRPC method name
        self, request: federation_pb2.DeliverFactsRequest, context: Context
    ) -> federation_pb2.DeliverFactsResponse:
        """Queue facts released in a peer's case for one of this node's partners."""
        delivered = await deliver_facts(self.parts, current_identity(), request)
        return federation_pb2.DeliverFactsResponse(
            delivered=delivered.categories,
            decision=delivered.decision.to_proto(),
            trace=current_trace_proto(),
        )

    async def LinkCase(  # noqa: N802 - gRPC method name
        self, request: federation_pb2.LinkCaseRequest, context: Context
    ) -> federation_pb2.LinkCaseResponse:
        """Make or update the caller's link for its case; a retry changes nothing."""
        changed = await take_link(self.parts, current_identity(), request)
        return federation_pb2.LinkCaseResponse(changed=changed, trace=current_trace_proto())

    async def TransferCase(  # noqa: N802 - gRPC method name
        self, request: federation_pb2.TransferCaseRequest, context: Context
    ) -> federation_pb2.TransferCaseResponse:
        """Open the handed-over case here, in aanmelding; a retry returns the same case."""
        taken = await take_over(self.parts, current_identity(), request)
        return federation_pb2.TransferCaseResponse(
            case_ref=common_pb2.CaseRef(node_id=self.parts.node_id, case_id=taken.case_id),
            created=taken.created,
        )
