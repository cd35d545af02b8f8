"""Soak: ten minutes of steady referrals and hit/no-hit rounds against a node process.

The node runs as its own process (SQLite), so its memory and open files are
its own. Partners refer at a steady rate and the procesregisseur runs
hit/no-hit rounds on the cases they open. After a warm-up the node's
resident memory and file descriptors must stay flat and the p99 latency
stable, with no failed call. ``SCHAKEL_SOAK_SECONDS`` shortens the run.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from pathlib import Path

import grpc
import pytest
from schakel.v1 import case_pb2, case_pb2_grpc, common_pb2

from gateway.dev.keys import DevKeys
from gateway.tls import channel_credentials, node_channel
from tests.support.chain import start_chain
from tests.support.pki import RR, Federation
from tests.support.process import ACTIVITY, NodeProcess, node_process, referral_load, y_of

pytestmark = pytest.mark.slow

SECONDS = float(os.environ.get("SCHAKEL_SOAK_SECONDS", "600"))
REFERRAL_WORKERS = 4
REFERRAL_INTERVAL = 0.1
"""Four loops at ten referrals a second each: 40 referrals/s."""
ROUND_INTERVAL = 0.25
"""Four hit/no-hit rounds a second."""
SAMPLE_EVERY = 5.0
MEMORY_GROWTH = 0.10
"""How much the node's resident memory may grow after the warm-up."""


def _fds(node: NodeProcess) -> int:
    assert node.proc is not None
    return len(os.listdir(f"/proc/{node.proc.pid}/fd"))


def _p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100)[98] if len(values) >= 100 else max(values)


async def _rounds(
    node: NodeProcess,
    fed: Federation,
    acked: dict[str, str],
    stop: asyncio.Event,
    latencies: list[tuple[float, float]],
    errors: list[str],
) -> None:
    """One hit/no-hit round per ROUND_INTERVAL on the newest case the partners opened."""
    officer = fed.officer(RR, "procesregisseur")
    creds = channel_credentials(fed.ca_file, officer.cert_file, officer.key_file)
    purpose = common_pb2.Purpose(processing_activity_id=ACTIVITY)
    async with node_channel(node.address, RR, creds) as channel:
        stub = case_pb2_grpc.CaseServiceStub(channel)
        due = time.monotonic()
        while not stop.is_set():
            due += ROUND_INTERVAL
            await asyncio.sleep(max(due - time.monotonic(), 0))
            if not acked:
                continue
            case_id = next(reversed(acked.values()))
            started = time.monotonic()
            try:
                await stub.RunHitNoHit(
                    case_pb2.RunHitNoHitRequest(
                        purpose=purpose,
                        case_ref=common_pb2.CaseRef(node_id=RR, case_id=case_id),
                        deadline_ms=1000,
                    ),
                    timeout=5,
                )
            except grpc.aio.AioRpcError as exc:
                errors.append(f"RunHitNoHit {exc.code().name}")
            else:
                latencies.append((started, time.monotonic() - started))


async def test_ten_minutes_of_steady_load_keep_memory_flat_and_p99_stable(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fed = Federation(tmp_path / "pki")
    chain = await start_chain(fed, DevKeys(tmp_path / "keys"))
    node = node_process(
        tmp_path, fed, RR, f"sqlite:///{tmp_path / 'soak.db'}", transcryptors=chain.endpoints
    )
    node.start()
    await node.serving(fed.partner(RR, "politie-rr", "politie"), fed.ca_file)
    stop = asyncio.Event()
    acked: dict[str, str] = {}
    referrals: list[tuple[float, float]] = []
    rounds: list[tuple[float, float]] = []
    errors: list[str] = []
    samples: list[tuple[float, int, int]] = []
    started = time.monotonic()
    load = [
        asyncio.create_task(
            referral_load(
                node,
                fed,
                y_of(tmp_path),
                stop,
                workers=REFERRAL_WORKERS,
                acked=acked,
                interval=REFERRAL_INTERVAL,
                latencies=referrals,
                on_error=lambda code: errors.append(f"SubmitReferral {code.name}"),
            )
        ),
        asyncio.create_task(_rounds(node, fed, acked, stop, rounds, errors)),
    ]
    try:
        while (elapsed := time.monotonic() - started) < SECONDS:
            await asyncio.sleep(SAMPLE_EVERY)
            samples.append((elapsed, node.rss_kib(), _fds(node)))
    finally:
        stop.set()
        await asyncio.gather(*load)
        assert node.stop() == 0
        await chain.stop()

    assert errors == []
    warm = SECONDS / 5
    settled = [(t, rss, fds) for t, rss, fds in samples if t >= warm]
    first_rss, last_rss = settled[0][1], max(rss for _, rss, _ in settled[-3:])
    growth = last_rss / first_rss - 1
    assert growth <= MEMORY_GROWTH, f"resident memory grew {growth:.1%} after the warm-up"
    assert max(f for _, _, f in settled) <= settled[0][2] + 10, "file descriptors grew"
    calls = sorted(referrals + rounds)
    early = [d for t, d in calls if started + warm <= t < started + 2 * warm]
    late = [d for t, d in calls if t >= started + SECONDS - warm]
    early_p99, late_p99 = _p99(early), _p99(late)
    assert late_p99 <= max(2 * early_p99, early_p99 + 0.05), (early_p99, late_p99)
    rate = len(calls) / SECONDS
    with capsys.disabled():
        print(
            f"\nsoak: {SECONDS:.0f} s, {len(calls)} calls ({rate:.0f}/s), 0 errors; "
            f"memory {first_rss / 1024:.1f} -> {last_rss / 1024:.1f} MiB ({growth:+.1%}); "
            f"fds {settled[0][2]} -> {settled[-1][2]}; "
            f"p99 {early_p99 * 1000:.1f} ms early, {late_p99 * 1000:.1f} ms late"
        )
