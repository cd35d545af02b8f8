"""Hit/no-hit fan-out to peer nodes in processes of their own, on loopback and over a WAN.

The ``flow`` area's fan-out rows run all 31 nodes in one process, so a
30-peer fan-out there queues the 30 peers' work on one interpreter. Here
each of the 30 peers is a whole node process (``schakel node run``:
directory check, pseudonym, policy, case look-up, durable audit on its own
SQLite file, warnings-only logging; :mod:`tests.bench.peers`), and the
asking node's :class:`~gateway.federation.PeerClient` runs in this process.
The subject is converted to each peer's domain once, up front (the chain's
cost is in the ``pseudonyms`` rows), so a fan-out is the node's work only.

The peers' SQLite files live in ``/dev/shm`` where there is one: their
commits still fsync (synchronous=FULL), but into memory. On one shared
virtual disk 30 nodes' flushes queue behind each other (about 4 ms each
here), which, like one shared CPU, separate machines would not; the
``flow`` rows keep the disk flush of a node on disk.

What the rows measure on this machine: the asker's fan-out plus each
peer's answer, with the peers scheduled by the kernel over the machine's
cores (2 here, shared with other work) instead of queued on one GIL. On
separate machines each peer would have its own CPU; here 30 peers still
share 2 cores, so the 30-peer rows keep a CPU share that a federation
would not see: ``fanout_30`` - ``fanout_1`` on loopback is that share. The
``wan_*`` rows dial each peer through a :class:`~tests.bench.latency.LatencyRelay`
(40 ms round trip; the relays run in this process); ``wan_fanout_30_vs_1``
is the p50 ratio the federation target (<= 1.5x) is about. The baseline is
a grpc health Check on a bare grpc.aio server with the same mTLS.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from schakel.v1 import common_pb2

from gateway.federation import Peer, PeerClient
from gateway.tls import channel_credentials, node_channel
from tests.bench.federation_calls import bare_health_server, hit_no_hit_call
from tests.bench.harness import (
    Call,
    Result,
    latency_results,
    measure_calls,
    percentiles_ms,
    run_in_temp_dir,
)
from tests.bench.latency import LatencyRelay
from tests.bench.peers import PeerProcesses, start_peer_processes
from tests.support.cluster import Cluster, start_cluster, stop_cluster
from tests.support.pki import Federation

AREA = "fanout"
PEERS = 30
ASKER = "zvh-00"
PEER_IDS = [f"zvh-p{i:02d}" for i in range(1, PEERS + 1)]
CASE = common_pb2.CaseRef(node_id=ASKER, case_id="0" * 32)
WAN_ONE_WAY = 0.020
REPEATS = 3
SHM = Path("/dev/shm")
"""Where the peers' databases go when the machine has it: memory, see the module doc."""
# name -> (calls per repeat, calls in flight, calls one at a time for p50/p99)
PLAN = {
    "baseline": (1000, 16, 200),
    "fanout_1": (200, 8, 50),
    "fanout_30": (20, 2, 20),
    "wan_fanout_1": (80, 8, 30),
    "wan_fanout_30": (12, 2, 20),
}


async def _series(name: str, call: Call) -> dict[str, float]:
    """Median rate under load over the repeats, and p50/p99 (ms) one call at a time."""
    total, in_flight, one_at_a_time = PLAN[name]
    await measure_calls(call, max(in_flight, total // 10), in_flight)
    rates = [(await measure_calls(call, total, in_flight))[0] for _ in range(REPEATS)]
    _rate, alone = await measure_calls(call, one_at_a_time, 1)
    p50, p99 = percentiles_ms(alone)
    return {"rate": statistics.median(rates), "p50_ms": round(p50, 3), "p99_ms": round(p99, 3)}


def _calls(name: str) -> int:
    """How many calls :func:`_series` makes for ``name``: warm-up, repeats, one at a time."""
    total, in_flight, one_at_a_time = PLAN[name]
    return max(in_flight, total // 10) + REPEATS * total + one_at_a_time


async def _baseline(
    fed: Federation, creds: grpc.ChannelCredentials
) -> tuple[Call, Callable[[], Awaitable[None]]]:
    """The baseline call on a bare server, and what stops both."""
    server, port = await bare_health_server(fed, "zvh-bare")
    channel = node_channel(f"127.0.0.1:{port}", "zvh-bare", creds)
    stub = health_pb2_grpc.HealthStub(channel)
    check = health_pb2.HealthCheckRequest()

    async def close() -> None:
        await channel.close(None)
        await server.stop(None)

    return lambda: stub.Check(check, timeout=10), close


async def _bench(root: Path) -> list[Result]:
    cluster = await start_cluster(root / "cluster", [ASKER])
    try:
        with tempfile.TemporaryDirectory(dir=SHM if SHM.is_dir() else None) as db_dir:
            peers = await start_peer_processes(
                cluster, root / "peers", ASKER, PEER_IDS, Path(db_dir)
            )
            try:
                return await _measure(cluster, peers)
            finally:
                peers.stop()
    finally:
        await stop_cluster(cluster)


async def _measure(cluster: Cluster, peers: PeerProcesses) -> list[Result]:
    pki = cluster.fed.root
    creds = channel_credentials(
        cluster.fed.ca_file, pki / f"node-{ASKER}.pem", pki / f"node-{ASKER}.key"
    )
    relays = [LatencyRelay(peer.address, WAN_ONE_WAY) for peer in peers.peers]
    wan_peers: list[Peer] = []
    loopback = PeerClient(ASKER, lambda: peers.peers, creds)
    wan = PeerClient(ASKER, lambda: wan_peers, creds)
    # Converted once, up front: the chain's conversions are measured in the pseudonym
    # and chain rows; here they would be 30 conversions in this process per fan-out.
    subjects = {peer: cluster.subject_for(ASKER)(peer) for peer in PEER_IDS}
    subject_for = subjects.__getitem__
    results: dict[str, dict[str, float]] = {}
    baseline, close_baseline = await _baseline(cluster.fed, creds)
    try:
        for relay, peer in zip(relays, peers.peers, strict=True):
            wan_peers.append(Peer(peer.node_id, await relay.start()))
        results["baseline"] = await _series("baseline", baseline)
        cpu_ms_per_answer = 0.0
        for prefix, client in (("", loopback), ("wan_", wan)):
            for k in (1, PEERS):
                call = hit_no_hit_call(
                    client, subject_for, PEER_IDS[:k], case=CASE, hit_from=PEER_IDS[0]
                )
                cpu_before = peers.cpu_seconds()
                results[f"{prefix}fanout_{k}"] = await _series(f"{prefix}fanout_{k}", call)
                if not prefix and k == PEERS:
                    answers = k * _calls(f"{prefix}fanout_{k}")
                    cpu_ms_per_answer = (peers.cpu_seconds() - cpu_before) * 1000 / answers
        rss = peers.rss_mib()
    finally:
        await loopback.close()
        await wan.close()
        await asyncio.gather(*(relay.close() for relay in relays))
        await close_baseline()
    rtt = f"RTT {2 * WAN_ONE_WAY * 1000:.0f} ms through a relay per peer"
    notes = {
        "baseline": "grpc health Check, bare grpc.aio server, same mTLS",
        "fanout_1": "PeerClient.hit_no_hit to 1 peer node process",
        "fanout_30": f"PeerClient.hit_no_hit to {PEERS} peer node processes in parallel",
        "wan_fanout_1": f"the same to 1 peer process, {rtt}",
        "wan_fanout_30": f"the same to {PEERS} peer processes in parallel, {rtt}",
    }
    in_flight = {name: plan[1] for name, plan in PLAN.items()}
    p50 = {name: values["p50_ms"] for name, values in results.items()}
    return [
        *latency_results(AREA, results, notes, in_flight),
        Result(
            AREA,
            "wan_fanout_30_vs_1",
            p50["wan_fanout_30"] / p50["wan_fanout_1"],
            "x p50",
            notes=(
                f"p50 wan_fanout_30 / wan_fanout_1 = {p50['wan_fanout_30']:.1f} / "
                f"{p50['wan_fanout_1']:.1f} ms; target <= 1.5x; the {PEERS} peer processes "
                f"share this machine's {os.cpu_count()} cores: on loopback fanout_30 - fanout_1 = "
                f"{p50['fanout_30'] - p50['fanout_1']:.1f} ms; a peer spends "
                f"{cpu_ms_per_answer:.1f} ms CPU per answer; {PEERS} peers started in "
                f"{peers.seconds_to_start:.0f} s, {rss:.0f} MiB resident together"
            ),
            extra={
                "peers_rss_mib": round(rss),
                "peers_start_s": round(peers.seconds_to_start),
                "peer_cpu_ms_per_answer": round(cpu_ms_per_answer, 2),
            },
        ),
    ]


def run() -> list[Result]:
    """Fan-out to peer node processes: rates, p50/p99 and the 30-vs-1 WAN ratio."""
    return run_in_temp_dir(_bench, log_level="warning")
