"""gRPC over mTLS: what the node's interceptor costs per call, and handshake rate.

Client and server share one process and event loop, so the rates include
both sides. The baseline is the same health servicer on a bare grpc.aio
server with the same mTLS credentials and no interceptor.
"""

from __future__ import annotations

import asyncio
import io
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio  # type: ignore[attr-defined]

from gateway.logging import configure_logging
from gateway.rpc.server import NodeServer, build_server
from gateway.tls import ServerCertificates, channel_credentials, node_channel
from tests.bench.harness import Result, median_rate
from tests.support.pki import RR, Federation

AREA = "gateway"
SEQUENTIAL = 300
CONCURRENT = 1000
HANDSHAKES = 50


async def _bare_server(
    fed: Federation, node_cert: Path, node_key: Path
) -> tuple[grpc.aio.Server, int]:
    server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
    servicer = health_aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    creds = ServerCertificates(fed.ca_file, node_cert, node_key).credentials()
    port = server.add_secure_port("127.0.0.1:0", creds)
    await server.start()
    await servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    return server, port


def _rates(
    loop: asyncio.AbstractEventLoop, target: str, creds: grpc.ChannelCredentials
) -> tuple[float, float, float]:
    channel = node_channel(target, RR, creds)
    stub = health_pb2_grpc.HealthStub(channel)
    request = health_pb2.HealthCheckRequest()

    async def sequential() -> None:
        for _ in range(SEQUENTIAL):
            await stub.Check(request, timeout=10)

    async def concurrent() -> None:
        await asyncio.gather(*(stub.Check(request, timeout=30) for _ in range(CONCURRENT)))

    async def handshakes() -> None:
        for _ in range(HANDSHAKES):
            async with node_channel(target, RR, creds) as fresh:
                await health_pb2_grpc.HealthStub(fresh).Check(request, timeout=10)

    def driver(coro: Callable[[], Awaitable[None]]) -> Callable[[], None]:
        return lambda: loop.run_until_complete(coro())

    try:
        return (
            median_rate(driver(sequential), SEQUENTIAL),
            median_rate(driver(concurrent), CONCURRENT),
            median_rate(driver(handshakes), HANDSHAKES),
        )
    finally:
        loop.run_until_complete(channel.close())


def run() -> list[Result]:
    """Calls per second through the node and through a bare server, and handshakes per second."""
    # Logs are produced and rendered as in production, then dropped.
    configure_logging("info", stream=io.StringIO())
    loop = asyncio.new_event_loop()
    # gRPC binds a channel to the current loop when it is created.
    asyncio.set_event_loop(loop)
    with tempfile.TemporaryDirectory() as tmp:
        fed = Federation(Path(tmp))
        node_cred = fed.node(RR)
        client = fed.partner(RR, "politie-rr", "politie")
        creds = channel_credentials(fed.ca_file, client.cert_file, client.key_file)

        async def start() -> tuple[NodeServer, grpc.aio.Server, int]:
            node = build_server(fed.config(node_cred))
            await node.start()
            bare, port = await _bare_server(fed, node_cred.cert_file, node_cred.key_file)
            return node, bare, port

        node, bare, bare_port = loop.run_until_complete(start())
        try:
            node_seq, node_conc, node_hs = _rates(loop, node.address, creds)
            bare_seq, bare_conc, bare_hs = _rates(loop, f"127.0.0.1:{bare_port}", creds)
        finally:
            loop.run_until_complete(node.stop(grace=None))
            loop.run_until_complete(bare.stop(grace=None))
            loop.close()
    return [
        Result(AREA, "bare_sequential", bare_seq, "calls/s", notes="no interceptor, one channel"),
        Result(
            AREA,
            "node_sequential",
            node_seq,
            "calls/s",
            baseline="bare_sequential",
            notes="auth+CRL+trace+log per call",
        ),
        Result(AREA, "bare_concurrent", bare_conc, "calls/s", notes=f"{CONCURRENT} in flight"),
        Result(
            AREA,
            "node_concurrent",
            node_conc,
            "calls/s",
            baseline="bare_concurrent",
            notes=f"{CONCURRENT} in flight",
        ),
        Result(AREA, "bare_handshakes", bare_hs, "connections/s", notes="new channel + 1 call"),
        Result(
            AREA,
            "node_handshakes",
            node_hs,
            "connections/s",
            baseline="bare_handshakes",
            notes="new channel + 1 call; fetcher stats cert files per handshake",
        ),
    ]
