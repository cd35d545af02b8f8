"""Three replicas of one node on one PostgreSQL behind HAProxy, and kill -9 of the leader.

Each replica is a ``schakel node run`` process; HAProxy (TCP mode, round
robin) is the one address partners and the procesregisseur use. Partners
refer and stream their tasks through it (two streams per organisation, so
every replica serves some) and answer the hit/no-hit questions on a
channel of their own, so answers often reach another replica than the one
that asked. The procesregisseur runs hit/no-hit rounds on channels spread
over the replicas. Under that load the leader is killed with SIGKILL. Then:
no acknowledged referral is lost, the streams reconnect and every task the
table held reached a stream, the audit log verifies, and another replica
leads within ten seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from schakel.v1 import audit_pb2, partner_pb2_grpc

from gateway.audit.records import decode
from gateway.audit.store import iter_leaves
from gateway.cases.tables import cases
from gateway.cli import main
from gateway.dev.keys import DevKeys
from gateway.flows.aanmelding import METHOD as REFERRAL_METHOD
from gateway.storage import make_engine
from gateway.tls import channel_credentials, node_channel
from tests.support import haproxy
from tests.support.chain import start_chain
from tests.support.databases import pg_schema_url
from tests.support.pki import RR, Federation
from tests.support.process import NodeProcess, log_vkey, referral_load, y_of
from tests.support.replicas import STREAMERS, Partner, leaders, replicas, rounds, watch_tasks

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

REPLICAS = 3
LOAD_SECONDS = 6.0
"""Load before the kill, and again after it."""
FAILOVER_SECONDS = 10.0


@pytest.fixture
def url() -> Iterator[str]:
    yield from pg_schema_url()


async def test_three_replicas_behind_haproxy_survive_kill_9_of_the_leader(
    tmp_path: Path, url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    problem = haproxy.install()
    if problem:
        pytest.skip(problem)
    fed = Federation(tmp_path / "pki")
    chain = await start_chain(fed, DevKeys(tmp_path / "keys"))
    nodes = replicas(tmp_path, fed, url, chain.endpoints, REPLICAS)
    health = fed.partner(RR, "politie-rr", "politie")
    nodes[0].start()  # alone first: it makes the node's vault key the others then read
    await nodes[0].serving(health, fed.ca_file)
    for node in nodes[1:]:
        node.start()
    for node in nodes[1:]:
        await node.serving(health, fed.ca_file)
    proxy = haproxy.start(tmp_path, [n.address for n in nodes])
    # The front the clients see: the haproxy process, its address and log.
    front = NodeProcess(RR, nodes[0].config, proxy.address, tmp_path / "haproxy.log", proxy.proc)
    stop, done = asyncio.Event(), asyncio.Event()
    acked: dict[str, str] = {}
    outcomes: Counter[str] = Counter()
    seen: dict[str, str] = {}
    partners = [Partner(fed, proxy.address, org) for org in STREAMERS]
    officer = fed.officer(RR, "procesregisseur")
    regie = channel_credentials(fed.ca_file, officer.cert_file, officer.key_file)
    jobs: list[asyncio.Task[None]] = []
    killed = -1
    try:
        await front.serving(health, fed.ca_file)
        assert sum(leaders(nodes)) == 1, "one leader among the replicas"
        async with contextlib.AsyncExitStack() as stack:
            for partner in partners:
                answers = await stack.enter_async_context(
                    node_channel(proxy.address, RR, partner.creds)
                )
                stub = partner_pb2_grpc.PartnerServiceStub(answers)
                for _ in range(REPLICAS):  # one after the other: round robin puts one on each
                    opened = asyncio.Event()
                    jobs.append(asyncio.create_task(partner.stream(done, stub, opened)))
                    await opened.wait()
            jobs.append(asyncio.create_task(watch_tasks(url, done, seen)))
            load = [
                asyncio.create_task(
                    referral_load(
                        front, fed, y_of(tmp_path), stop, workers=2, acked=acked, prefix=f"c{c}w"
                    )
                )
                for c in range(4)
            ] + [
                asyncio.create_task(rounds(regie, proxy.address, acked, stop, outcomes, w))
                for w in range(3)
            ]
            await asyncio.sleep(LOAD_SECONDS)
            before = leaders(nodes)
            killed = before.index(1) if before.count(1) == 1 else before.index(max(before))
            nodes[killed].kill()
            started = time.monotonic()
            while True:
                now = leaders(nodes)
                if any(now[i] > before[i] for i in range(REPLICAS) if i != killed):
                    break
                assert time.monotonic() - started < FAILOVER_SECONDS, "no replica took over"
                await asyncio.sleep(0.1)
            failover = time.monotonic() - started
            await asyncio.sleep(LOAD_SECONDS)
            stop.set()
            await asyncio.gather(*load)
            await asyncio.sleep(3.0)  # the streams take what the last rounds left
            done.set()
            await asyncio.gather(*jobs)
            await asyncio.gather(*(p.settle() for p in partners))
    finally:
        stop.set()
        done.set()
        proxy.stop()
        for n, node in enumerate(nodes):
            if n != killed and node.proc is not None and node.proc.poll() is None:
                assert node.stop() == 0
        await chain.stop()

    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            stored = set(conn.execute(sa.select(cases.c.id)).scalars())
            records = [decode(d) for _, _, d in iter_leaves(conn) if d is not None]
    finally:
        engine.dispose()
    referred = {
        r.case_ref.case_id
        for r in records
        if r.name == REFERRAL_METHOD and r.status == audit_pb2.SPAN_STATUS_OK
    }
    assert len(acked) > 20, "the load did not run"
    lost = [c for c in acked.values() if c not in stored or c not in referred]
    assert lost == [], "acknowledged referrals lost"
    answered = sum((p.answers for p in partners), Counter())
    assert outcomes["OK"] >= 5, (outcomes, answered, [len(p.received) for p in partners])
    assert sum(p.reconnects for p in partners) >= 2, "the killed replica's streams reconnected"
    received = set().union(*(p.received for p in partners))
    ours = {task_id for task_id, org in seen.items() if org in dict(STREAMERS)}
    assert ours, "the rounds made tasks"
    missed = ours - received
    assert missed == set(), f"{len(missed)} of {len(ours)} tasks never reached a stream"
    capsys.readouterr()
    assert main(["audit", "verify", "--db", url, "--log-key", log_vkey(tmp_path, RR)]) == 0
    verified = capsys.readouterr().out
    with capsys.disabled():
        print(
            f"\nreplicas: {REPLICAS} behind HAProxy, leader (replica {killed}) killed, "
            f"failover {failover:.1f} s; {len(acked)} acknowledged referrals, 0 lost; "
            f"rounds {dict(outcomes)}; {len(ours)} tasks, all received; answers "
            f"{dict(sum((p.answers for p in partners), Counter()))}; {verified.strip()}"
        )
