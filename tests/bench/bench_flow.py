"""The federated case flow over mTLS: hit/no-hit through a node and fan-out to 1, 5 and 30 peers.

Every node is a whole in-process node (policy, pseudonyms, SQLite audit log
in a temporary directory) on loopback, and clients, servers and all peers
share one process and one event loop on this machine. A fan-out's latency
therefore includes the CPU work of every peer that answers it, which on
separate machines would run in parallel: the numbers bound the real cost
from above. The baseline is a grpc health Check on a bare grpc.aio server
with the same mTLS credentials.

The ``wan_*`` rows ask the same peers of the same cluster through a
:class:`~tests.bench.latency.LatencyRelay` each, which delays every chunk by
``WAN_ONE_WAY`` seconds each way (40 ms round trip, as between regions over a
WAN or VPN; TLS passes through, so mTLS and the name checks stay real). They
show that a hit/no-hit across 30 nodes costs about one round
trip, not thirty. ``wan_fanout_30_vs_1`` is p50 to 30 peers / p50 to 1 peer:
1x plus the CPU of the 30 in-process peers, which here outweighs a 40 ms
round trip. So the ``*_added_rtts`` rows also give what the link adds to each
fan-out, in round trips: 1 to 2 in parallel (the relays' own work shares
this process's CPU too), about 30 one at a time. For the parallel fan-outs
that is the median difference of loopback and relayed calls run back to
back, as other load on this shared machine moves two p50s taken a minute
apart by more than a round trip. ``wan_serial_vs_parallel`` is the
p50 ratio of the two 30-peer fan-outs. p99 of the WAN rows comes from few
calls, so it is close to the maximum.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from schakel.v1 import common_pb2, federation_pb2, federation_pb2_grpc

from gateway.cases.model import Referral
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
from tests.support.cluster import PURPOSE, Cluster, start_cluster, stop_cluster

AREA = "flow"
PEERS = 30
REPEATS = 3
ASKER = "zvh-00"
NODES = [f"zvh-{i:02d}" for i in range(PEERS + 1)]
CASE = common_pb2.CaseRef(node_id=ASKER, case_id="0" * 32)
WAN_ONE_WAY = 0.020
"""Seconds each relay delays every chunk, each way: a 40 ms round trip."""
# name -> (calls per repeat, calls in flight, calls one at a time for p50/p99);
# the WAN rows are sized to take well under a minute together.
PLAN = {
    "baseline": (2000, 32, 500),
    "node_hitnohit": (600, 32, 150),
    "fanout_1": (300, 8, 75),
    "fanout_5": (120, 8, 30),
    "fanout_30": (30, 2, 20),
    "fanout_30_serial": (10, 1, 20),
    "wan_fanout_1": (100, 8, 30),
    "wan_fanout_30": (10, 2, 10),
    "wan_fanout_30_serial": (2, 1, 5),
}
PAIRS = 10
"""Loopback/WAN pairs behind each parallel ``*_added_rtts`` row."""


async def _series(name: str, call: Call) -> dict[str, float]:
    """Median rate over the repeats under load, and p50/p99 latency (ms) alone and under load.

    Latency "alone" is one call at a time (what one request costs); under
    load it includes queueing behind the other calls in flight.
    """
    total, in_flight, one_at_a_time = PLAN[name]
    await measure_calls(call, max(in_flight, total // 10), in_flight)  # warm channels and caches
    rates: list[float] = []
    loaded: list[float] = []
    for _ in range(REPEATS):
        rate, lat = await measure_calls(call, total, in_flight)
        rates.append(rate)
        loaded += lat
    _rate, alone = await measure_calls(call, one_at_a_time, 1)
    p50, p99 = percentiles_ms(alone)
    p50_loaded, p99_loaded = percentiles_ms(loaded)
    return {
        "rate": statistics.median(rates),
        "p50_ms": round(p50, 3),
        "p99_ms": round(p99, 3),
        "p50_ms_loaded": round(p50_loaded, 3),
        "p99_ms_loaded": round(p99_loaded, 3),
    }


async def _added_ms(loopback: Call, wan: Call, pairs: int) -> float:
    """Median of what ``wan`` takes longer than ``loopback``, run back to back, in ms.

    Each pair runs both calls one after the other (alternating which goes
    first), so a burst of other load on the machine hits both alike: the
    difference of two p50s measured a minute apart is noisier than the round
    trip it is after.
    """

    async def timed(call: Call) -> float:
        start = time.perf_counter()
        await call()
        return time.perf_counter() - start

    differences: list[float] = []
    for i in range(pairs):
        if i % 2 == 0:
            loopback_s = await timed(loopback)
            wan_s = await timed(wan)
        else:
            wan_s = await timed(wan)
            loopback_s = await timed(loopback)
        differences.append((wan_s - loopback_s) * 1000)
    return statistics.median(differences)


async def _wan(
    cluster: Cluster,
    credentials: grpc.ChannelCredentials,
    subject_for: Callable[[str], common_pb2.EncryptedPseudonym],
) -> tuple[dict[str, dict[str, float]], dict[str, float], float]:
    """The wan_* rows: hit/no-hit to the cluster's peers, each behind a LatencyRelay.

    Also returns what the relays add to a fan-out to 1 and to 30 peers in
    parallel (ms, from :func:`_added_ms` against the node's own loopback
    PeerClient), and the wall time this part took (s), to keep it under a minute.
    """
    start = time.perf_counter()
    loopback = cluster.nodes[ASKER].parts.peers
    assert loopback is not None
    relays = {
        node_id: LatencyRelay(cluster.addresses[node_id], WAN_ONE_WAY) for node_id in NODES[1:]
    }
    # Same node ids, relay addresses: each peer's certificate is still checked
    # against its own node id, through the relay.
    wan_peers: list[Peer] = []
    parallel = PeerClient(ASKER, lambda: wan_peers, credentials)
    serial = PeerClient(ASKER, lambda: wan_peers, credentials, concurrency=1)
    results: dict[str, dict[str, float]] = {}
    added: dict[str, float] = {}
    try:
        for node_id, relay in relays.items():
            wan_peers.append(Peer(node_id, await relay.start()))
        for name, client, only in (
            ("wan_fanout_1", parallel, NODES[1:2]),
            ("wan_fanout_30", parallel, NODES[1:]),
            ("wan_fanout_30_serial", serial, NODES[1:]),
        ):
            call = hit_no_hit_call(client, subject_for, only, case=CASE, hit_from=NODES[1])
            results[name] = await _series(name, call)
            if client is parallel:
                loopback_call = hit_no_hit_call(
                    loopback, subject_for, only, case=CASE, hit_from=NODES[1]
                )
                added[name] = await _added_ms(loopback_call, call, PAIRS)
    finally:
        await parallel.close()
        await serial.close()
        await asyncio.gather(*(relay.close() for relay in relays.values()))
    return results, added, time.perf_counter() - start


def _wan_ratios(
    measured: dict[str, dict[str, float]], added_ms: dict[str, float], seconds: float
) -> list[Result]:
    """The round-trip claim from latencies of one call at a time.

    In this one process the 30 peers' CPU work queues up and adds hundreds of
    ms to ``wan_fanout_30`` that separate machines would do in parallel, so
    besides the plain p50 ratio each fan-out's WAN cost is given in round
    trips: for the parallel fan-outs the median of paired differences
    (:func:`_added_ms`), for the serial one, whose 30 round trips dwarf the
    noise, p50 through the relays minus p50 on plain loopback.
    """
    p50 = {name: values["p50_ms"] for name, values in measured.items()}
    rtt_ms = 2 * WAN_ONE_WAY * 1000

    def added(wan: str, loopback: str) -> Result:
        if wan in added_ms:
            extra = added_ms[wan]
            how = f"median of {PAIRS} back-to-back {wan} - {loopback} differences"
        else:
            extra = p50[wan] - p50[loopback]
            how = f"p50 {wan} - p50 {loopback} = {p50[wan]:.1f} - {p50[loopback]:.1f} ms"
        return Result(
            AREA,
            f"{wan}_added_rtts",
            extra / rtt_ms,
            "round trips",
            notes=f"what the WAN link adds: {extra:.1f} ms / RTT {rtt_ms:.0f} ms ({how})",
            extra={"added_ms": round(extra, 1)},
        )

    return [
        Result(
            AREA,
            "wan_fanout_30_vs_1",
            p50["wan_fanout_30"] / p50["wan_fanout_1"],
            "x p50",
            notes=(
                f"p50 wan_fanout_30 / wan_fanout_1 = {p50['wan_fanout_30']:.1f} / "
                f"{p50['wan_fanout_1']:.1f} ms at RTT {rtt_ms:.0f} ms; 1x would be one round "
                f"trip; the 30 in-process peers' CPU adds about "
                f"{p50['fanout_30'] - p50['fanout_1']:.1f} ms (loopback fanout_30 - fanout_1 "
                f"p50); the wan_* rows took {seconds:.0f} s"
            ),
            extra={"wan_seconds": round(seconds, 1)},
        ),
        added("wan_fanout_1", "fanout_1"),
        added("wan_fanout_30", "fanout_30"),
        added("wan_fanout_30_serial", "fanout_30_serial"),
        Result(
            AREA,
            "wan_serial_vs_parallel",
            p50["wan_fanout_30_serial"] / p50["wan_fanout_30"],
            "x p50",
            notes=(
                f"p50 wan_fanout_30_serial / wan_fanout_30 = {p50['wan_fanout_30_serial']:.1f} / "
                f"{p50['wan_fanout_30']:.1f} ms at RTT {rtt_ms:.0f} ms: what parallel fan-out saves"
            ),
        ),
    ]


def hitnohit_call(cluster: Cluster, asker: str, target: str) -> tuple[Call, grpc.aio.Channel]:
    """FederationService.HitNoHit from ``asker`` to ``target``, which gets the subject's case.

    Returns the call and its channel (the caller closes it).
    """
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
    channel = cluster.channel(target, cluster.fed.node(asker, force=True))
    stub = federation_pb2_grpc.FederationServiceStub(channel)
    request = federation_pb2.FederatedHitRequest(
        purpose=common_pb2.Purpose(processing_activity_id=PURPOSE),
        case_ref=common_pb2.CaseRef(node_id=asker, case_id="0" * 32),
        subject=cluster.subject_for(asker)(target),
        phase=common_pb2.PHASE_AANMELDING,
    )
    return lambda: stub.HitNoHit(request, timeout=10), channel


async def _bench(root: Path) -> list[Result]:
    cluster = await start_cluster(root, NODES)
    target = NODES[1]
    bare, port = await bare_health_server(cluster.fed, "zvh-bare")
    root_dir = cluster.fed.root
    creds = channel_credentials(
        cluster.fed.ca_file, root_dir / f"node-{ASKER}.pem", root_dir / f"node-{ASKER}.key"
    )
    bare_channel = node_channel(f"127.0.0.1:{port}", "zvh-bare", creds)
    hitnohit, node_channel_ = hitnohit_call(cluster, ASKER, target)
    results: dict[str, dict[str, float]] = {}
    try:
        health = health_pb2_grpc.HealthStub(bare_channel)
        check = health_pb2.HealthCheckRequest()
        results["baseline"] = await _series("baseline", lambda: health.Check(check, timeout=10))
        results["node_hitnohit"] = await _series("node_hitnohit", hitnohit)
        peers = cluster.nodes[ASKER].parts.peers
        assert peers is not None
        subject_for = cluster.subject_for(ASKER)
        for k in (1, 5, PEERS):
            fan_out = hit_no_hit_call(
                peers, subject_for, NODES[1 : k + 1], case=CASE, hit_from=NODES[1]
            )
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
        wan, added, wan_seconds = await _wan(cluster, creds, subject_for)
        results |= wan
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
    rtt = f"through a relay per peer adding RTT {2 * WAN_ONE_WAY * 1000:.0f} ms"
    notes |= {
        "wan_fanout_1": f"PeerClient.hit_no_hit to 1 peer node {rtt}",
        "wan_fanout_30": f"PeerClient.hit_no_hit to 30 peer nodes in parallel, {rtt}",
        "wan_fanout_30_serial": f"the same 30 peers one at a time (concurrency 1), {rtt}",
    }
    in_flight = {name: plan[1] for name, plan in PLAN.items()}
    return latency_results(AREA, results, notes, in_flight) + _wan_ratios(
        results, added, wan_seconds
    )


def run() -> list[Result]:
    """Requests/s and p50/p99 latency of each flow step, with the ratio to the bare baseline."""
    return run_in_temp_dir(_bench)
