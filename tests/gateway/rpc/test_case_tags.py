"""SetBottlenecks over mTLS: tags from the policy bundle's list, on this node's own cases."""

from __future__ import annotations

import grpc
import pytest
from schakel.v1 import audit_pb2, case_pb2, common_pb2

from tests.support.flow import Flow
from tests.support.pki import RR
from tests.support.regie import PURPOSE, about, node_pseudonym, open_case, regie


def tag_request(
    case_id: str, *tags: str, node: str = RR, activity: str = PURPOSE.processing_activity_id
) -> case_pb2.SetBottlenecksRequest:
    return case_pb2.SetBottlenecksRequest(
        purpose=common_pb2.Purpose(processing_activity_id=activity),
        case_ref=common_pb2.CaseRef(node_id=node, case_id=case_id),
        tags=tags,
    )


async def test_tags_are_set_and_replaced_and_bad_requests_change_nothing(flow: Flow) -> None:
    case = open_case(flow)
    registry = flow.pair.nodes[RR].parts.registry
    async with regie(flow) as stub:
        status = await stub.SetBottlenecks(tag_request(case.id, "huisvesting", "schulden"))
        assert list(status.bottlenecks) == ["huisvesting", "schulden"]
        assert status.external_ref == ""
        status = await stub.SetBottlenecks(tag_request(case.id, "huisvesting"))
        assert list(status.bottlenecks) == ["huisvesting"]
        tagged = registry.get(case.id)
        bad: list[tuple[case_pb2.SetBottlenecksRequest, grpc.StatusCode, str]] = [
            (
                tag_request(case.id, "huisvesting", "geldzorgen"),
                grpc.StatusCode.INVALID_ARGUMENT,
                "unknown bottleneck tag(s) 'geldzorgen'",
            ),
            (
                tag_request(case.id, "schulden", "schulden"),
                grpc.StatusCode.INVALID_ARGUMENT,
                "tags are listed twice: 'schulden'",
            ),
            (
                tag_request(case.id, "zorgplek", node="zvh-twente"),
                grpc.StatusCode.INVALID_ARGUMENT,
                "acts only on its own cases",
            ),
            (
                tag_request(case.id, "zorgplek", activity="zvh.signalering"),
                grpc.StatusCode.PERMISSION_DENIED,
                "must be the case's activity",
            ),
            (
                tag_request("", "zorgplek"),
                grpc.StatusCode.INVALID_ARGUMENT,
                "case_ref.case_id is required",
            ),
            (tag_request("0" * 32, "zorgplek"), grpc.StatusCode.NOT_FOUND, "0" * 32),
        ]
        for request, code, message in bad:
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await stub.SetBottlenecks(request)
            assert err.value.code() is code, message
            assert message in (err.value.details() or "")
    assert registry.get(case.id) == tagged
    last = about(flow, node_pseudonym(flow))[-1]
    assert last.name == "schakel.v1.CaseService/SetBottlenecks"
    assert last.status == audit_pb2.SPAN_STATUS_ERROR
