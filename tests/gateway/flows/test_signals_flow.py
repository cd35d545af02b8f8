"""Signalling end to end: the procesregisseur tags cases, the national collector counts them."""

from __future__ import annotations

import datetime as dt

import grpc
import pytest
from schakel.v1 import (
    case_pb2,
    case_pb2_grpc,
    common_pb2,
    federation_pb2,
    federation_pb2_grpc,
    partner_pb2_grpc,
)

from adapters.sdk import encrypt_subject
from gateway.dev.fakedata import fake_bsns
from tests.support.pair import Pair
from tests.support.partnerflow import PURPOSE, referral
from tests.support.pki import RR


async def test_tags_set_by_the_regie_reach_the_collector_as_suppressed_aggregates(
    pair: Pair,
) -> None:
    politie = pair.fed.partner(RR, "politie-rr", "politie")
    regie = pair.fed.officer(RR, "procesregisseur")
    collector = pair.fed.collector()
    y = pair.keys.global_public_key()

    cases = []
    async with pair.channel(RR, politie) as channel:
        stub = partner_pb2_grpc.PartnerServiceStub(channel)
        for i, bsn in enumerate(fake_bsns(11)):
            made = await stub.SubmitReferral(
                referral(pair, key=f"k{i}", subject=encrypt_subject("bsn", bsn, y))
            )
            cases.append(made.case_ref)
    async with pair.channel(RR, regie) as channel:
        stub_case = case_pb2_grpc.CaseServiceStub(channel)
        for ref in cases[:10]:
            status = await stub_case.SetBottlenecks(
                case_pb2.SetBottlenecksRequest(purpose=PURPOSE, case_ref=ref, tags=["huisvesting"])
            )
            assert list(status.bottlenecks) == ["huisvesting"]
        with pytest.raises(grpc.aio.AioRpcError) as bad:
            await stub_case.SetBottlenecks(
                case_pb2.SetBottlenecksRequest(
                    purpose=PURPOSE, case_ref=cases[10], tags=["geen-tag"]
                )
            )
        assert bad.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    async with pair.channel(RR, politie) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await case_pb2_grpc.CaseServiceStub(channel).SetBottlenecks(
                case_pb2.SetBottlenecksRequest(
                    purpose=PURPOSE, case_ref=cases[0], tags=["huisvesting"]
                )
            )
        assert refused.value.code() is grpc.StatusCode.PERMISSION_DENIED
    now = dt.datetime.now(dt.UTC)
    request = federation_pb2.SignalsRequest(
        purpose=common_pb2.Purpose(processing_activity_id="zvh.signalering")
    )
    request.period_start.FromDatetime(now - dt.timedelta(days=1))
    request.period_end.FromDatetime(now + dt.timedelta(days=1))

    async def cells() -> dict[tuple[str, str], tuple[int, bool]]:
        async with pair.channel(RR, collector) as channel:
            reply = await federation_pb2_grpc.FederationServiceStub(channel).GetSignals(request)
        assert reply.k == 10
        return {(c.theme, c.bottleneck): (c.count, c.suppressed) for c in reply.cells}

    # 10 tagged and 1 untagged case: the 1 is below k, and since the theme total
    # (11) is published, the 10 and the tag's total must be hidden as well, or
    # 11 - 10 would give the hidden 1 away (complementary suppression).
    seen = await cells()
    assert seen[("complexe-casuistiek", "")] == (0, True)
    assert seen[("complexe-casuistiek", "huisvesting")] == (0, True)
    assert seen[("*", "huisvesting")] == (0, True)
    assert seen[("complexe-casuistiek", "*")] == (11, False)
    async with pair.channel(RR, regie) as channel:
        await case_pb2_grpc.CaseServiceStub(channel).SetBottlenecks(
            case_pb2.SetBottlenecksRequest(
                purpose=PURPOSE, case_ref=cases[10], tags=["huisvesting"]
            )
        )
    seen = await cells()
    assert seen[("complexe-casuistiek", "huisvesting")] == (11, False)
    assert ("complexe-casuistiek", "") not in seen
