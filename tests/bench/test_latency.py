"""LatencyRelay: bytes arrive in order and no earlier than the delay; mTLS passes through."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

import pytest
from schakel.v1 import common_pb2

from gateway.federation import Peer, PeerClient
from gateway.federation.client import DOWN
from gateway.tls import channel_credentials
from tests.bench.latency import LatencyRelay
from tests.support.cluster import PURPOSE, A, B, start_cluster, stop_cluster

DELAY = 0.05


class Upstream:
    """A loopback TCP server that records what arrives when, echoes it, and may hang up."""

    def __init__(self) -> None:
        self.arrived: list[tuple[float, bytes]] = []
        self.eof = asyncio.Event()
        self.hang_up = asyncio.Event()
        self.server: asyncio.Server | None = None

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return f"127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        hang_up = asyncio.create_task(self.hang_up.wait())
        while True:
            read = asyncio.create_task(reader.read(1024))
            await asyncio.wait([read, hang_up], return_when=asyncio.FIRST_COMPLETED)
            if hang_up.done():
                read.cancel()
                break
            data = read.result()
            if not data:
                self.eof.set()
                break
            self.arrived.append((time.monotonic(), data))
            writer.write(data)
            await writer.drain()
        hang_up.cancel()
        writer.close()

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()


async def test_bytes_arrive_in_order_one_delay_each_way() -> None:
    upstream = Upstream()
    address = await upstream.start()
    async with LatencyRelay(address, DELAY) as relay:
        reader, writer = await asyncio.open_connection(*relay.address.rsplit(":", 1))
        sent: list[tuple[float, bytes]] = []
        for i in range(20):
            chunk = f"chunk-{i:02d};".encode()
            sent.append((time.monotonic(), chunk))
            writer.write(chunk)
            await writer.drain()
            await asyncio.sleep(0.002)
        expected = b"".join(chunk for _t, chunk in sent)
        echoed = await asyncio.wait_for(reader.readexactly(len(expected)), timeout=5)
        back = time.monotonic()
        assert echoed == expected
        assert b"".join(data for _t, data in upstream.arrived) == expected
        # One way: the first byte reached the upstream no earlier than the delay.
        assert upstream.arrived[0][0] - sent[0][0] >= DELAY
        # Sent every 2 ms, the chunks are in flight together: the link is not
        # serialised by the delay, so the whole exchange is about one round trip.
        assert back - sent[-1][0] >= 2 * DELAY
        writer.close()
        await writer.wait_closed()
    await upstream.stop()


async def test_client_closing_closes_the_upstream_side() -> None:
    upstream = Upstream()
    address = await upstream.start()
    async with LatencyRelay(address, DELAY) as relay:
        _reader, writer = await asyncio.open_connection(*relay.address.rsplit(":", 1))
        writer.write(b"last words")
        await writer.drain()
        writer.close()
        await writer.wait_closed()
        await asyncio.wait_for(upstream.eof.wait(), timeout=5)
        assert b"".join(data for _t, data in upstream.arrived) == b"last words"
    await upstream.stop()


async def test_upstream_closing_closes_the_client_side() -> None:
    upstream = Upstream()
    address = await upstream.start()
    async with LatencyRelay(address, DELAY) as relay:
        reader, writer = await asyncio.open_connection(*relay.address.rsplit(":", 1))
        writer.write(b"ping")
        await writer.drain()
        assert await asyncio.wait_for(reader.readexactly(4), timeout=5) == b"ping"
        upstream.hang_up.set()
        assert await asyncio.wait_for(reader.read(), timeout=5) == b""
        writer.close()
        await writer.wait_closed()
    await upstream.stop()


async def test_closing_the_relay_closes_open_connections(caplog: pytest.LogCaptureFixture) -> None:
    upstream = Upstream()
    address = await upstream.start()
    relay = LatencyRelay(address, DELAY)
    reader, writer = await asyncio.open_connection(*(await relay.start()).rsplit(":", 1))
    writer.write(b"ping")
    await writer.drain()
    assert await asyncio.wait_for(reader.readexactly(4), timeout=5) == b"ping"
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        await relay.close()
        await asyncio.sleep(0)
    assert await asyncio.wait_for(reader.read(), timeout=5) == b""
    assert not caplog.records
    await asyncio.wait_for(upstream.eof.wait(), timeout=5)
    writer.close()
    await writer.wait_closed()
    await upstream.stop()


async def test_upstream_down_closes_the_client_side() -> None:
    upstream = Upstream()
    address = await upstream.start()
    await upstream.stop()
    async with LatencyRelay(address, DELAY) as relay:
        reader, writer = await asyncio.open_connection(*relay.address.rsplit(":", 1))
        assert await asyncio.wait_for(reader.read(), timeout=5) == b""
        writer.close()
        await writer.wait_closed()


async def test_mtls_passes_through_to_the_peer_it_names(tmp_path: Path) -> None:
    cluster = await start_cluster(tmp_path, [A, B])
    try:
        async with LatencyRelay(cluster.addresses[B], DELAY) as relay:
            own = cluster.fed.node(A, force=True)
            creds = channel_credentials(cluster.fed.ca_file, own.cert_file, own.key_file)
            # B's relay listed under B's id, and under an id whose certificate B lacks.
            peers = [Peer(B, relay.address), Peer("zvh-imposter", relay.address)]
            client = PeerClient(A, lambda: peers, creds)
            try:
                result = await client.hit_no_hit(
                    purpose=PURPOSE,
                    case_ref=common_pb2.CaseRef(node_id=A, case_id="0" * 32),
                    phase=common_pb2.PHASE_AANMELDING,
                    subject_for=cluster.subject_for(A),
                    deadline=10.0,
                )
            finally:
                await client.close()
        assert set(result.answers) == {B}
        assert result.answers[B].hit is False
        assert result.unanswered == {"zvh-imposter": DOWN}
    finally:
        await stop_cluster(cluster)
