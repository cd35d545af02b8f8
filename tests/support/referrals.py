"""A referral over mTLS, the way the flow tests open a case."""

from __future__ import annotations

from schakel.v1 import common_pb2, partner_pb2, partner_pb2_grpc

from adapters.sdk import encrypt_subject
from tests.support.flow import ACTIVITY, Flow

BSN = "123456782"


PURPOSE = common_pb2.Purpose(processing_activity_id=ACTIVITY)


def referral(flow: Flow, key: str = "ref-1", bsn: str = BSN) -> partner_pb2.SubmitReferralRequest:
    return partner_pb2.SubmitReferralRequest(
        idempotency_key=key,
        purpose=PURPOSE,
        subject=encrypt_subject("bsn", bsn, flow.y),
        theme="complexe-casuistiek",
        criteria=["meervoudige-problematiek"],
        reason_codes=["escalatie"],
        external_ref="REF-1",
    )


async def refer(
    flow: Flow, node_id: str, org_id: str, org_type: str, key: str = "ref-1"
) -> partner_pb2.SubmitReferralResponse:
    cred = flow.pair.fed.partner(node_id, org_id, org_type, force=True)
    async with flow.pair.channel(node_id, cred) as channel:
        stub = partner_pb2_grpc.PartnerServiceStub(channel)
        return await stub.SubmitReferral(referral(flow, key))
