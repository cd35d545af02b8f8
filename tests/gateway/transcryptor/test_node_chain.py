"""A node's calls through the chain: a transcryptor that refuses or is down stops the subject."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from schakel.v1 import partner_pb2, partner_pb2_grpc

from adapters.sdk import encrypt_subject
from gateway.dev.chain import allow_list
from tests.support.pair import Pair, start_pair, stop_pair
from tests.support.partnerflow import BSN, PURPOSE, expected_pseudonym, referral
from tests.support.pki import RR


@pytest.fixture
async def narrow(tmp_path: Path, db_url: str) -> AsyncIterator[Pair]:
    """A pair whose tc-landelijk converts only to node domains."""
    started = await start_pair(tmp_path, db_url, allow={"tc-landelijk": allow_list(["zvh-*"])})
    try:
        yield started
    finally:
        await stop_pair(started)


def pseudonymise(pair: Pair) -> partner_pb2.PseudonymiseRequest:
    y = pair.keys.global_public_key()
    return partner_pb2.PseudonymiseRequest(
        purpose=PURPOSE, subjects=[encrypt_subject("bsn", BSN, y)]
    )


async def test_one_transcryptors_policy_stops_what_the_other_allows(narrow: Pair) -> None:
    politie = narrow.fed.partner(RR, "politie-rr", "politie")
    async with narrow.channel(RR, politie) as channel:
        stub = partner_pb2_grpc.PartnerServiceStub(channel)
        # Into the node's own domain both allow it: the referral opens a case.
        made = await stub.SubmitReferral(referral(narrow), timeout=10)
        assert made.case_ref.case_id
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.Pseudonymise(pseudonymise(narrow), timeout=10)
    assert refused.value.code() is grpc.StatusCode.PERMISSION_DENIED
    assert "transcryptor tc-landelijk refused" in (refused.value.details() or "")
    case = narrow.nodes[RR].parts.registry.get(made.case_ref.case_id)
    assert case.subject == expected_pseudonym(narrow, RR)


async def test_a_transcryptor_that_is_down_makes_the_call_unavailable(pair: Pair) -> None:
    assert pair.chain is not None
    await pair.chain.servers[1].stop(grace=None)
    politie = pair.fed.partner(RR, "politie-rr", "politie")
    async with pair.channel(RR, politie) as channel:
        stub = partner_pb2_grpc.PartnerServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as down:
            await stub.Pseudonymise(pseudonymise(pair), timeout=20)
    assert down.value.code() is grpc.StatusCode.UNAVAILABLE
    assert "transcryptor tc-landelijk did not convert" in (down.value.details() or "")
    pair.chain.servers.pop(1)
