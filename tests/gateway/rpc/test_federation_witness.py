"""AddCheckpoint on a whole node over mTLS: a witness's refusal keeps its machine-readable size."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from schakel.v1 import federation_pb2_grpc

from gateway.audit.witness import WITNESS_SIZE_KEY
from tests.support.audit import record
from tests.support.pair import Pair, start_pair, stop_pair
from tests.support.pki import HL, RR


@pytest.fixture
async def pair(tmp_path: Path) -> AsyncIterator[Pair]:
    """RR and HL on SQLite, each witnessing the other."""
    started = await start_pair(tmp_path, f"sqlite:///{tmp_path / 'rr.db'}")
    try:
        yield started
    finally:
        await stop_pair(started)


async def test_a_stale_old_size_is_failed_precondition_with_the_held_size_in_metadata(
    pair: Pair,
) -> None:
    hl = pair.nodes[HL].parts
    hl.audit.append_sync(record())
    stale = hl.checkpointer.witness_request(await asyncio.to_thread(hl.checkpointer.sign), 0)
    async with pair.channel(RR, pair.fed.node(HL, force=True)) as channel:
        stub = federation_pb2_grpc.FederationServiceStub(channel)
        # The first is cosigned, unless HL's own witnessing got there first; either
        # way RR now holds a size above 0, so the same request again is stale.
        with contextlib.suppress(grpc.aio.AioRpcError):
            await stub.AddCheckpoint(stale, timeout=10)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.AddCheckpoint(stale, timeout=10)
    assert err.value.code() is grpc.StatusCode.FAILED_PRECONDITION
    held = dict(err.value.trailing_metadata() or ()).get(WITNESS_SIZE_KEY)
    assert isinstance(held, str) and held.isdigit() and int(held) > 0
    assert f"holds size {held}" in (err.value.details() or "")
