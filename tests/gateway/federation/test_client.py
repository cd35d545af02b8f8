"""PeerClient: partial answers within the deadline, retries only where idempotent, hot reload."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from schakel.v1 import common_pb2, federation_pb2, federation_pb2_grpc

from gateway.federation import Peer, PeerClient
from gateway.federation.client import DEADLINE, DOWN, REFUSED
from gateway.rpc.stand_in import UnimplementedFederationService
from gateway.tls import channel_credentials
from tests.support.cluster import PURPOSE, A, B, C, Cluster, free_port
from tests.support.peercases import CASE, open_case_at

FLAKY, LATE, GONE = "zvh-flaky", "zvh-late", "zvh-gone"


class SimulatedPeer(UnimplementedFederationService):
    """A peer node over real mTLS that fails its first calls, or answers late."""

    def __init__(self, *, fail_first: int = 0, delay: float = 0.0) -> None:
        self.calls = 0
        self.fail_first = fail_first
        self.delay = delay

    async def HitNoHit(
        self, request: federation_pb2.FederatedHitRequest, context: Any
    ) -> federation_pb2.FederatedHitResponse:
        self.calls += 1
        if self.calls <= self.fail_first:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "restarting")
        await asyncio.sleep(self.delay)
        return federation_pb2.FederatedHitResponse(hit=True, contact_handle="regie@sim.example")


@dataclass
class Simulated:
    servicer: SimulatedPeer
    peer: Peer


@pytest.fixture
async def simulate(trio: Cluster) -> AsyncIterator[Any]:
    servers: list[grpc.aio.Server] = []

    async def start(node_id: str, servicer: SimulatedPeer) -> Simulated:
        cred = trio.fed.node(node_id)
        server = grpc.aio.server()
        federation_pb2_grpc.add_FederationServiceServicer_to_server(servicer, server)
        creds = grpc.ssl_server_credentials(
            [(cred.key_file.read_bytes(), cred.cert_file.read_bytes())],
            root_certificates=trio.fed.ca_file.read_bytes(),
            require_client_auth=True,
        )
        port = server.add_secure_port("127.0.0.1:0", creds)
        await server.start()
        servers.append(server)
        return Simulated(servicer, Peer(node_id, f"127.0.0.1:{port}"))

    yield start
    for server in servers:
        await server.stop(None)


def client_of(trio: Cluster, peers: Sequence[Peer]) -> PeerClient:
    """A's peer client over ``peers``, with A's own certificate."""
    root = trio.fed.root
    creds = channel_credentials(trio.fed.ca_file, root / f"node-{A}.pem", root / f"node-{A}.key")
    return PeerClient(A, lambda: peers, creds)


def listed(trio: Cluster, *node_ids: str) -> list[Peer]:
    return [Peer(n, trio.addresses[n]) for n in node_ids]


async def hit(client: PeerClient, trio: Cluster, deadline: float) -> Any:
    return await client.hit_no_hit(
        purpose=PURPOSE,
        case_ref=CASE,
        phase=common_pb2.PHASE_AANMELDING,
        subject_for=trio.subject_for(A),
        deadline=deadline,
    )


async def test_partial_answer_within_the_deadline_names_down_and_late_peers(
    trio: Cluster, simulate: Any
) -> None:
    open_case_at(trio, B)
    late = await simulate(LATE, SimulatedPeer(delay=30.0))
    gone = Peer(GONE, f"127.0.0.1:{free_port()}")
    client = client_of(trio, [*listed(trio, B, C), late.peer, gone])
    deadline = 1.0
    try:
        start = time.monotonic()
        result = await hit(client, trio, deadline)
        elapsed = time.monotonic() - start
    finally:
        await client.close()
    assert elapsed < deadline + 0.5
    assert {n: h.hit for n, h in result.answers.items()} == {B: True, C: False}
    assert result.unanswered == {LATE: DEADLINE, GONE: DOWN}
    assert not result.complete


async def test_a_down_peer_does_not_hold_up_the_answer(trio: Cluster) -> None:
    client = client_of(trio, [*listed(trio, B), Peer(GONE, f"127.0.0.1:{free_port()}")])
    try:
        start = time.monotonic()
        result = await hit(client, trio, 5.0)
        elapsed = time.monotonic() - start
    finally:
        await client.close()
    assert result.unanswered == {GONE: DOWN}
    assert set(result.answers) == {B}
    assert elapsed < 2.0, "a refused connection is not waited out to the deadline"


async def test_an_idempotent_call_is_retried_after_unavailable(
    trio: Cluster, simulate: Any
) -> None:
    flaky = await simulate(FLAKY, SimulatedPeer(fail_first=1))
    client = client_of(trio, [flaky.peer])
    try:
        result = await hit(client, trio, 5.0)
    finally:
        await client.close()
    assert result.answers[FLAKY].hit is True
    assert result.unanswered == {}
    assert flaky.servicer.calls == 2


async def test_a_non_idempotent_call_is_not_retried(trio: Cluster, simulate: Any) -> None:
    flaky = await simulate(FLAKY, SimulatedPeer(fail_first=1))
    client = client_of(trio, [flaky.peer])

    async def call(peer: Peer, stub: Any, timeout: float) -> federation_pb2.FederatedHitResponse:
        request = federation_pb2.FederatedHitRequest(case_ref=CASE)
        reply: federation_pb2.FederatedHitResponse = await stub.HitNoHit(request, timeout=timeout)
        return reply

    try:
        result = await client.fan_out("Once", call, deadline=5.0, idempotent=False)
    finally:
        await client.close()
    assert result.unanswered == {FLAKY: DOWN}
    assert flaky.servicer.calls == 1


async def test_a_peer_that_keeps_failing_gets_a_bounded_number_of_attempts(
    trio: Cluster, simulate: Any
) -> None:
    flaky = await simulate(FLAKY, SimulatedPeer(fail_first=100))
    client = client_of(trio, [flaky.peer])
    try:
        result = await hit(client, trio, 5.0)
    finally:
        await client.close()
    assert result.unanswered == {FLAKY: DOWN}
    assert flaky.servicer.calls == 3


async def test_only_names_peers_and_unlisted_ones_are_down(trio: Cluster) -> None:
    peers = trio.nodes[A].parts.peers
    assert peers is not None
    result = await peers.hit_no_hit(
        purpose=PURPOSE,
        case_ref=CASE,
        phase=common_pb2.PHASE_AANMELDING,
        subject_for=trio.subject_for(A),
        deadline=5.0,
        only=[C, "zvh-nowhere"],
    )
    assert set(result.answers) == {C}
    assert result.unanswered == {"zvh-nowhere": DOWN}


async def test_the_node_picks_up_a_newly_signed_directory(trio: Cluster) -> None:
    peers = trio.nodes[A].parts.peers
    assert peers is not None
    assert {p.node_id for p in peers.peers()} == {B, C}
    trio.relist([(A, trio.addresses[A]), (B, trio.addresses[B])])
    await asyncio.sleep(1.1)
    assert {p.node_id for p in peers.peers()} == {B}
    result = await hit(peers, trio, 5.0)
    assert set(result.answers) == {B}
    # A leaves the federation: B and C now refuse its calls.
    trio.relist([(B, trio.addresses[B]), (C, trio.addresses[C])])
    await asyncio.sleep(1.1)
    result = await hit(peers, trio, 5.0)
    assert result.answers == {}
    assert result.unanswered == {B: REFUSED, C: REFUSED}


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="concurrency"):
        PeerClient(A, list, grpc.ssl_channel_credentials(), concurrency=0)
