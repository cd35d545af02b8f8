"""A stand-in PartnerService that answers with the identity the node read from its caller."""

from __future__ import annotations

import grpc
from schakel.v1 import common_pb2, partner_pb2

from gateway.rpc.auth import current_identity
from gateway.rpc.stand_in import UnimplementedPartnerService


class EchoIdentityPartnerService(UnimplementedPartnerService):
    """Test-only: GetCaseStatus answers with the identity the node read from the caller."""

    async def GetCaseStatus(
        self, request: partner_pb2.GetCaseStatusRequest, context: grpc.aio.ServicerContext
    ) -> partner_pb2.CaseStatus:
        identity = current_identity()
        return partner_pb2.CaseStatus(
            case_ref=common_pb2.CaseRef(node_id=identity.node_id, case_id=identity.uri),
            theme=identity.org_type,
        )
