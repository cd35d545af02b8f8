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

import grpc
import pytest
import sqlalchemy as sa
from schakel.v1 import audit_pb2, case_pb2, case_pb2_grpc, common_pb2, partner_pb2, partner_pb2_grpc

from gateway.audit.records import decode
from gateway.audit.store import iter_leaves
from gateway.cases.tables import cases
from gateway.cli import main
from gateway.dev.keys import DevKeys
from gateway.flows.aanmelding import METHOD as REFERRAL_METHOD
from gateway.storage import make_engine
from gateway.tasks.store import partner_tasks
from gateway.tls import channel_credentials, node_channel
from tests.support import haproxy
from tests.support.chain import start_chain
from tests.support.databases import pg_schema_url
from tests.support.pki import RR, Federation
from tests.support.ports import free_port
from tests.support.process import ACTIVITY, NodeProcess, log_vkey, node_process, referral_load, y_of

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

REPLICAS = 3
STREAMERS = (("ggz-rr", "ggz"), ("gemeente-rr", "gemeente"))
PARTNERS = "".join(f'\n[[partners]]\nid = "{o}"\norg_type = "{t}"\n' for o, t in STREAMERS)
LOAD_SECONDS = 6.0
"""Load before the kill, and again after it."""
FAILOVER_SECONDS = 10.0
LEADING = '"event": "leadership_acquired"'


def replicas(
    root: Path, fed: Federation, url: str, chain: list[tuple[str, str]]
) -> list[NodeProcess]:
    """Three processes of node RR on one database, each with its own port, config and log."""
    first = node_process(root, fed, RR, url, extra=PARTNERS, transcryptors=chain)
    text = first.config.read_text()
    made = []
    for n in range(REPLICAS):
        address = f"127.0.0.1:{free_port()}"
        config = root / f"replica{n}.toml"
        config.write_text(text.replace(first.address, address))
        made.append(NodeProcess(RR, config, address, root / f"replica{n}.log"))
    return made


def leaders(nodes: list[NodeProcess]) -> list[int]:
    """How often each replica has taken the leadership so far (from its log)."""
    return [n.log.read_text().count(LEADING) if n.log.exists() else 0 for n in nodes]


class Partner:
    """One partner organisation: task streams through the proxy, answers on a channel of its own."""

    def __init__(self, fed: Federation, proxy: str, org: tuple[str, str]) -> None:
        cred = fed.partner(RR, *org, force=True)
        self.creds = channel_credentials(fed.ca_file, cred.cert_file, cred.key_file)
        self.proxy = proxy
        self.received: set[str] = set()
        self.reconnects = 0
        self.answers: Counter[str] = Counter()
        self._answering: set[asyncio.Future[None]] = set()

    async def stream(
        self,
        stop: asyncio.Event,
        answerer: partner_pb2_grpc.PartnerServiceStub,
        opened: asyncio.Event,
    ) -> None:
        """Take tasks until ``stop``, opening the stream again whenever it breaks."""
        while not stop.is_set():
            try:
                async with node_channel(self.proxy, RR, self.creds) as channel:
                    await channel.channel_ready()
                    opened.set()
                    call = partner_pb2_grpc.PartnerServiceStub(channel).ReceiveTasks(
                        partner_pb2.ReceiveTasksRequest()
                    )
                    stopping = asyncio.ensure_future(stop.wait())
                    async for task in _until(call, stopping):
                        self.received.add(task.task_id)
                        if task.kind == partner_pb2.TASK_KIND_HIT_QUERY:
                            answering = asyncio.ensure_future(self._answer(answerer, task))
                            self._answering.add(answering)
                            answering.add_done_callback(self._answering.discard)
            except grpc.aio.AioRpcError:
                self.reconnects += 1
                await asyncio.sleep(0.2)

    async def settle(self) -> None:
        """Wait for the answers still on their way."""
        await asyncio.gather(*self._answering)

    async def _answer(
        self, stub: partner_pb2_grpc.PartnerServiceStub, task: partner_pb2.PartnerTask
    ) -> None:
        try:
            await stub.AnswerHit(
                partner_pb2.AnswerHitRequest(
                    task_id=task.task_id, purpose=task.purpose, case_ref=task.case_ref, known=False
                ),
                timeout=5,
            )
            self.answers["OK"] += 1
        except grpc.aio.AioRpcError as exc:
            self.answers[exc.code().name] += 1


async def _until(call: grpc.aio.UnaryStreamCall, stopping: asyncio.Future[bool]):  # type: ignore[no-untyped-def, type-arg]
    """The stream's tasks until ``stopping`` completes."""
    reader = call.__aiter__()
    while True:
        nxt = asyncio.ensure_future(reader.__anext__())
        done, _ = await asyncio.wait({nxt, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if nxt not in done:
            nxt.cancel()
            call.cancel()
            return
        try:
            yield nxt.result()
        except StopAsyncIteration:
            return


async def rounds(
    creds: grpc.ChannelCredentials,
    proxy: str,
    acked: dict[str, str],
    stop: asyncio.Event,
    outcomes: Counter[str],
    worker: int,
) -> None:
    """The procesregisseur: hit/no-hit rounds on the newest cases, on a channel of its own."""
    purpose = common_pb2.Purpose(processing_activity_id=ACTIVITY)
    async with node_channel(proxy, RR, creds) as channel:
        stub = case_pb2_grpc.CaseServiceStub(channel)
        while not stop.is_set():
            await asyncio.sleep(0.1)
            if len(acked) <= worker:
                continue
            case_id = list(acked.values())[-1 - worker]
            try:
                await stub.RunHitNoHit(
                    case_pb2.RunHitNoHitRequest(
                        purpose=purpose,
                        case_ref=common_pb2.CaseRef(node_id=RR, case_id=case_id),
                        deadline_ms=4000,
                    ),
                    timeout=10,
                )
                outcomes["OK"] += 1
            except grpc.aio.AioRpcError as exc:
                outcomes[exc.code().name] += 1


async def watch_tasks(url: str, stop: asyncio.Event, seen: dict[str, str]) -> None:
    """Every task the table holds, read every 0.2 s: id -> organisation."""
    engine = make_engine(url)
    t = partner_tasks
    try:
        while not stop.is_set():
            with engine.connect() as conn:
                for task_id, org in conn.execute(sa.select(t.c.id, t.c.org_id)):
                    seen[task_id] = org
            await asyncio.sleep(0.2)
    finally:
        engine.dispose()


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
    nodes = replicas(tmp_path, fed, url, chain.endpoints)
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
