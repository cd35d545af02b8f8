"""Hit/no-hit throughput of one node with 1 and with 3 replicas on one PostgreSQL.

Each replica is a ``schakel node run`` process; HAProxy (TCP mode, round
robin) stands in front in both runs, so the two differ only in the number
of replicas. Two partner organisations stream their tasks through it and
answer every HIT_QUERY at once (their answers often reach another replica
than the one that asked, as in production); the procesregisseur runs
``CaseService.RunHitNoHit`` from :data:`WORKERS` channels spread over the
replicas, each round asking both partners. The value is completed rounds
per second over :data:`SECONDS`, the median of :data:`REPEATS` windows.

Everything (replicas, transcryptor chain, PostgreSQL, HAProxy, the load)
shares this machine's cores, so the 3-replica row shows the coordination
cost of replicas (tasks and answers through the table, NOTIFY) more than
their gain, which needs replicas on hosts of their own.
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import time
from collections import Counter
from pathlib import Path

from schakel.v1 import partner_pb2_grpc

from gateway.dev.keys import DevKeys
from gateway.tls import channel_credentials, node_channel
from tests.bench.harness import Result, run_in_temp_dir
from tests.support import haproxy
from tests.support.chain import start_chain
from tests.support.databases import PG_PROBLEM, pg_schema_url
from tests.support.pki import RR, Federation
from tests.support.process import NodeProcess, referral_load, y_of
from tests.support.replicas import STREAMERS, Partner, replicas, rounds

AREA = "replicas"
WORKERS = 6
"""Procesregisseur channels, each running one round at a time."""
SECONDS = 8.0
REPEATS = 3
CASES = 12
"""Cases the rounds are run on, referred before measuring."""


async def _throughput(root: Path, count: int) -> tuple[float, Counter[str]]:
    """Median rounds/s with ``count`` replicas, and the rounds' outcomes."""
    schema = pg_schema_url()
    url = next(schema)
    fed = Federation(root / "pki")
    chain = await start_chain(fed, DevKeys(root / "keys"))
    nodes = replicas(root, fed, url, chain.endpoints, count)
    health = fed.partner(RR, "politie-rr", "politie")
    nodes[0].start()
    await nodes[0].serving(health, fed.ca_file)
    for node in nodes[1:]:
        node.start()
    for node in nodes[1:]:
        await node.serving(health, fed.ca_file)
    proxy = haproxy.start(root, [n.address for n in nodes])
    front = NodeProcess(RR, nodes[0].config, proxy.address, root / "haproxy.log", proxy.proc)
    officer = fed.officer(RR, "procesregisseur")
    regie = channel_credentials(fed.ca_file, officer.cert_file, officer.key_file)
    partners = [Partner(fed, proxy.address, org) for org in STREAMERS]
    done = asyncio.Event()
    outcomes: Counter[str] = Counter()
    rates: list[float] = []
    jobs: list[asyncio.Task[None]] = []
    try:
        await front.serving(health, fed.ca_file)
        async with contextlib.AsyncExitStack() as stack:
            for partner in partners:
                answers = await stack.enter_async_context(
                    node_channel(proxy.address, RR, partner.creds)
                )
                stub = partner_pb2_grpc.PartnerServiceStub(answers)
                for _ in range(count):
                    opened = asyncio.Event()
                    jobs.append(asyncio.create_task(partner.stream(done, stub, opened)))
                    await opened.wait()
            acked: dict[str, str] = {}
            refer = asyncio.Event()
            referring = asyncio.create_task(
                referral_load(front, fed, y_of(root), refer, workers=2, acked=acked)
            )
            while len(acked) < CASES:
                await asyncio.sleep(0.1)
            refer.set()
            await referring
            await asyncio.sleep(2.0)  # the referrals' own first rounds end
            for _ in range(REPEATS):
                stop = asyncio.Event()
                window = Counter[str]()
                load = [
                    asyncio.create_task(
                        rounds(regie, proxy.address, acked, stop, window, w, pause=0.0)
                    )
                    for w in range(WORKERS)
                ]
                started = time.monotonic()
                await asyncio.sleep(SECONDS)
                stop.set()
                await asyncio.gather(*load)
                rates.append(window["OK"] / (time.monotonic() - started))
                outcomes += window
            done.set()
            await asyncio.gather(*jobs)
            await asyncio.gather(*(p.settle() for p in partners))
    finally:
        done.set()
        proxy.stop()
        for node in nodes:
            node.stop()
        await chain.stop()
        with contextlib.suppress(StopIteration):
            next(schema)  # drops the schema
    return statistics.median(rates), outcomes


async def _bench(root: Path) -> list[Result]:
    if PG_PROBLEM is not None or haproxy.install():
        why = PG_PROBLEM or haproxy.install()
        print(f"   skipped: {why}", flush=True)
        return []
    one, one_outcomes = await _throughput(root / "one", 1)
    three, three_outcomes = await _throughput(root / "three", 3)
    plan = f"{WORKERS} regie channels, 2 streaming partners, median of {REPEATS} x {SECONDS:.0f} s"
    return [
        Result(
            AREA,
            "hitnohit_1_replica",
            one,
            "rounds/s",
            notes=f"CaseService.RunHitNoHit via HAProxy, 1 replica; {plan}; "
            f"outcomes {dict(one_outcomes)}",
        ),
        Result(
            AREA,
            "hitnohit_3_replicas",
            three,
            "rounds/s",
            baseline="hitnohit_1_replica",
            notes=f"the same with 3 replicas on one PostgreSQL, all on this machine; "
            f"outcomes {dict(three_outcomes)}",
        ),
    ]


def run() -> list[Result]:
    """Rounds/s of RunHitNoHit with 1 and with 3 replicas, in the same run."""
    return run_in_temp_dir(_bench)
