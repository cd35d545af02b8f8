"""The federated case flow over mTLS: hit/no-hit through a node and fan-out to 1, 5 and 30 peers.

Every node is a whole in-process node (policy, pseudonyms, SQLite audit log
in a temporary directory) on loopback, and clients, servers and all peers
share one process and one event loop on this machine. A fan-out's latency
therefore includes the CPU work of every peer that answers it, which on
separate machines would run in parallel: the numbers bound the real cost
from above. The baseline is a grpc health Check on a bare grpc.aio server
with the same mTLS credentials.
"""

from __future__ import annotations

import asyncio
import io
import statistics
import tempfile
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio  # type: ignore[attr-defined]
from schakel.v1 import common_pb2, federation_pb2, federation_pb2_grpc

from gateway.cases.model import Referral
from gateway.federation import PeerClient
from gateway.logging import configure_logging
from gateway.tls import ServerCertificates, channel_credentials, node_channel
from tests.bench.harness import (
    Call,
    Result,
    latency_results,
    measure_calls,
    percentiles_ms,
)
from tests.federation.conftest import PURPOSE, Cluster, start_cluster, stop_cluster

AREA = "flow"
PEERS = 30
REPEATS = 3
ASKER = "zvh-00"
NODES = [f"zvh-{i:02d}" for i in range(PEERS + 1)]
CASE = common_pb2.CaseRef(node_id=ASKER, case_id="0" * 32)
# (name, calls per repeat, calls in flight)
PLAN = {
    "baseline": (2000, 32),
    "node_hitnohit": (600, 32),
    "fanout_1": (300, 8),
    "fanout_5": (120, 8),
    "fanout_30": (30, 2),
    "fanout_30_serial": (10, 1),
}


async def _series(name: str, call: Call) -> dict[str, float]:
    """Median rate over the repeats under load, and p50/p99 latency (ms) alone and under load.

    Latency "alone" is one call at a time (what one request costs); under
    load it includes queueing behind the other calls in flight.
    """
    total, in_flight = PLAN[name]
    await measure_calls(call, max(in_flight, total // 10), in_flight)  # warm channels and caches
    rates: list[float] = []
    loaded: list[float] = []
    for _ in range(REPEATS):
        rate, lat = await measure_calls(call, total, in_flight)
        rates.append(rate)
        loaded += lat
    _rate, alone = await measure_calls(call, max(20, total // 4), 1)
    p50, p99 = percentiles_ms(alone)
    p50_loaded, p99_loaded = percentiles_ms(loaded)
    return {
        "rate": statistics.median(rates),
        "p50_ms": round(p50, 3),
        "p99_ms": round(p99, 3),
        "p50_ms_loaded": round(p50_loaded, 3),
        "p99_ms_loaded": round(p99_loaded, 3),
    }


async def _bare_server(cluster: Cluster, node_id: str) -> tuple[grpc.aio.Server, int]:
    cred = cluster.fed.node(node_id, force=True)
    server = grpc.aio.server()
    servicer = health_aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    creds = ServerCertificates(cluster.fed.ca_file, cred.cert_file, cred.key_file).credentials()
    port = server.add_secure_port("127.0.0.1:0", creds)
    await server.start()
    await servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    return server, port


async def _bench(root: Path) -> list[Result]:
    cluster = await start_cluster(root, NODES)
    target = NODES[1]
    subjects = cluster.nodes[target].parts.subjects
    assert subjects is not None
    cluster.nodes[target].parts.registry.refer(
        Referral(
            referrer_org_id="politie-zh",
            referrer_org_type="politie",
            idempotency_key="bench",
            subject=cluster.pseudonym_at(target),
            activity=PURPOSE,
            theme="verward-gedrag",
        )
    )
    bare, port = await _bare_server(cluster, "zvh-bare")
    root_dir = cluster.fed.root
    creds = channel_credentials(
        cluster.fed.ca_file, root_dir / f"node-{ASKER}.pem", root_dir / f"node-{ASKER}.key"
    )
    bare_channel = node_channel(f"127.0.0.1:{port}", "zvh-bare", creds)
    node_channel_ = cluster.channel(target, cluster.fed.node(ASKER, force=True))
    results: dict[str, dict[str, float]] = {}
    try:
        health = health_pb2_grpc.HealthStub(bare_channel)
        check = health_pb2.HealthCheckRequest()
        results["baseline"] = await _series("baseline", lambda: health.Check(check, timeout=10))
        stub = federation_pb2_grpc.FederationServiceStub(node_channel_)
        request = federation_pb2.FederatedHitRequest(
            purpose=common_pb2.Purpose(processing_activity_id=PURPOSE),
            case_ref=CASE,
            subject=cluster.subject_for(ASKER)(target),
            phase=common_pb2.PHASE_AANMELDING,
        )
        results["node_hitnohit"] = await _series(
            "node_hitnohit", lambda: stub.HitNoHit(request, timeout=10)
        )
        peers = cluster.nodes[ASKER].parts.peers
        assert peers is not None
        subject_for = cluster.subject_for(ASKER)
        for k in (1, 5, PEERS):
            only = NODES[1 : k + 1]

            async def fan_out(only: list[str] = only) -> object:
                result = await peers.hit_no_hit(
                    purpose=PURPOSE,
                    case_ref=CASE,
                    phase=common_pb2.PHASE_AANMELDING,
                    subject_for=subject_for,
                    deadline=30.0,
                    only=only,
                )
                if result.unanswered or not result.answers[NODES[1]].hit:
                    raise RuntimeError(f"fan-out incomplete: {result.unanswered}")
                return result

            results[f"fanout_{k}"] = await _series(f"fanout_{k}", fan_out)
        serial = PeerClient(ASKER, peers.peers, creds, concurrency=1)

        async def one_by_one() -> object:
            return await serial.hit_no_hit(
                purpose=PURPOSE,
                case_ref=CASE,
                phase=common_pb2.PHASE_AANMELDING,
                subject_for=subject_for,
                deadline=60.0,
                only=NODES[1:],
            )

        try:
            results["fanout_30_serial"] = await _series("fanout_30_serial", one_by_one)
        finally:
            await serial.close()
    finally:
        await bare_channel.close(None)
        await node_channel_.close(None)
        await bare.stop(None)
        await stop_cluster(cluster)
    notes = {
        "baseline": "grpc health Check, bare grpc.aio server, same mTLS",
        "node_hitnohit": "FederationService.HitNoHit: auth, pseudonym, policy, case look-up, "
        "durable audit",
        "fanout_1": "PeerClient.hit_no_hit to 1 peer node, incl. transcryption per peer",
        "fanout_5": "PeerClient.hit_no_hit to 5 peer nodes in parallel",
        "fanout_30": "PeerClient.hit_no_hit to 30 peer nodes in parallel; all 31 nodes "
        "share this process",
        "fanout_30_serial": "the same 30 peers one at a time (concurrency 1), to compare",
    }
    return latency_results(AREA, results, notes, {name: plan[1] for name, plan in PLAN.items()})


def run() -> list[Result]:
    """Requests/s and p50/p99 latency of each flow step, with the ratio to the bare baseline."""
    configure_logging("info", stream=io.StringIO())
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            return loop.run_until_complete(_bench(Path(tmp)))
    finally:
        loop.close()
