"""A node's replicas as processes on one PostgreSQL, and the load put on them.

:func:`replicas` makes the configs of N ``schakel node run`` processes of
one node (own port, own log, one database); :class:`Partner` streams and
answers a partner organisation's tasks through whatever address it is
given (HAProxy in front of the replicas), opening its stream again when it
breaks; :func:`rounds` is the procesregisseur's hit/no-hit rounds. The
replica test (tests/gateway/test_replicas.py) and the replica benchmark
(tests/bench/bench_replicas.py) share them.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import sqlalchemy as sa
from schakel.v1 import case_pb2, case_pb2_grpc, common_pb2, partner_pb2, partner_pb2_grpc

from gateway.storage import make_engine
from gateway.tasks.store import partner_tasks
from gateway.tls import channel_credentials, node_channel
from tests.support.pki import RR, Federation
from tests.support.ports import free_port
from tests.support.process import ACTIVITY, NodeProcess, node_process

STREAMERS = (("ggz-rr", "ggz"), ("gemeente-rr", "gemeente"))
PARTNERS = "".join(f'\n[[partners]]\nid = "{o}"\norg_type = "{t}"\n' for o, t in STREAMERS)
LEADING = '"event": "leadership_acquired"'


def replicas(
    root: Path, fed: Federation, url: str, chain: list[tuple[str, str]], count: int
) -> list[NodeProcess]:
    """``count`` processes of node RR on one database, each with its own port, config and log."""
    first = node_process(root, fed, RR, url, extra=PARTNERS, transcryptors=chain)
    text = first.config.read_text()
    made = []
    for n in range(count):
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
        answerer: partner_pb2_grpc.PartnerServiceAsyncStub,
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
        self, stub: partner_pb2_grpc.PartnerServiceAsyncStub, task: partner_pb2.PartnerTask
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


async def _until(
    call: grpc.aio.UnaryStreamCall[partner_pb2.ReceiveTasksRequest, partner_pb2.PartnerTask],
    stopping: asyncio.Future[Any],
) -> AsyncIterator[partner_pb2.PartnerTask]:
    """The stream's tasks until ``stopping`` completes."""
    reader = call.__aiter__()
    while True:
        nxt = asyncio.ensure_future(reader.__anext__())
        waits: set[asyncio.Future[Any]] = {nxt, stopping}
        done, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
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
    pause: float = 0.1,
) -> None:
    """The procesregisseur: hit/no-hit rounds on the newest cases, on a channel of its own."""
    purpose = common_pb2.Purpose(processing_activity_id=ACTIVITY)
    async with node_channel(proxy, RR, creds) as channel:
        stub = case_pb2_grpc.CaseServiceStub(channel)
        while not stop.is_set():
            await asyncio.sleep(pause if len(acked) > worker else 0.1)
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
