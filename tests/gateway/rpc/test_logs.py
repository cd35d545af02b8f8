"""Log lines carry who, what, status, duration and trace ids: never message contents."""

from __future__ import annotations

import grpc
import pytest
from schakel.v1 import common_pb2, partner_pb2, partner_pb2_grpc

from gateway.rpc.server import Servicers
from gateway.rpc.stand_in import UnimplementedPartnerService
from tests.support.pki import HL, RR, Federation, LogCapture, StartNode, channel_to

BSN = "999999990"
NAME = "Jan de Vries"
RPC_FIELDS = {
    "component",
    "event",
    "level",
    "timestamp",
    "method",
    "status",
    "duration_ms",
    "peer",
    "trace_id",
    "span_id",
    "parent_span_id",
    "reason",
    "error_type",
}


async def test_request_contents_never_reach_a_log_line(
    federation: Federation, start_node: StartNode, logs: LogCapture
) -> None:
    node = await start_node(federation.config(federation.node(RR)))
    request = partner_pb2.SubmitReferralRequest(
        idempotency_key=f"ref-{BSN}",
        theme="huiselijk_geweld",
        external_ref=f"{NAME} {BSN}",
        subject=common_pb2.EncryptedPseudonym(b=BSN.encode() * 3, c=NAME.encode()),
    )
    for cred in (
        federation.partner(RR, "politie-rr", "politie"),
        federation.partner(HL, "politie-hl", "politie"),
    ):
        async with channel_to(node, cred, federation.ca_file) as channel:
            with pytest.raises(grpc.aio.AioRpcError):
                await partner_pb2_grpc.PartnerServiceStub(channel).SubmitReferral(
                    request, timeout=5
                )
    text = logs.stream.getvalue()
    assert BSN not in text
    assert NAME not in text
    assert "huiselijk_geweld" not in text
    calls = [line for line in logs.lines() if line.get("method", "").endswith("SubmitReferral")]
    assert {line["event"] for line in calls} == {"rpc", "rpc_refused"}
    finished = {line["peer"]: line["status"] for line in calls if line["event"] == "rpc"}
    assert finished == {
        f"schakel://partner/{RR}/politie-rr": "UNIMPLEMENTED",
        f"schakel://partner/{HL}/politie-hl": "PERMISSION_DENIED",
    }
    for line in calls:
        assert set(line) <= RPC_FIELDS
        assert line["peer"].startswith("schakel://partner/")
        assert len(line["trace_id"]) == 32


class _FailingPartnerService(UnimplementedPartnerService):
    """A servicer whose storage blows up with an error that quotes the request."""

    async def GetCaseStatus(
        self, request: partner_pb2.GetCaseStatusRequest, context: object
    ) -> partner_pb2.CaseStatus:
        raise RuntimeError(f"INSERT failed for {NAME} with BSN {BSN}")


async def test_an_unexpected_failure_answers_internal_and_quotes_nothing(
    federation: Federation, start_node: StartNode, logs: LogCapture
) -> None:
    node = await start_node(
        federation.config(federation.node(RR)), Servicers(partner=_FailingPartnerService())
    )
    async with channel_to(
        node, federation.partner(RR, "politie-rr", "politie"), federation.ca_file
    ) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as failed:
            await partner_pb2_grpc.PartnerServiceStub(channel).GetCaseStatus(
                partner_pb2.GetCaseStatusRequest(), timeout=5
            )
    assert failed.value.code() is grpc.StatusCode.INTERNAL
    details = failed.value.details() or ""
    assert "RuntimeError" in details and "trace" in details
    assert BSN not in details and NAME not in details
    text = logs.stream.getvalue()
    assert BSN not in text and NAME not in text
    (failure,) = logs.events("rpc_failed")
    assert failure["error_type"] == "RuntimeError"
