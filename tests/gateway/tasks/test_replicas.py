"""Two replicas of a node on one PostgreSQL: each with its own engine and broker.

A task made on one replica reaches a stream on the other (woken by NOTIFY,
not by its poll), an answer taken on one reaches the asker on the other, a
task goes to one stream only, and a stream that opens again gets what a
broken one had taken.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Iterator

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from schakel.v1 import common_pb2, partner_pb2

from gateway.cases import FactVault
from gateway.storage import alembic_config, make_engine, metadata, migrate
from gateway.tasks import replicas
from gateway.tasks.broker import TaskNotYoursError
from gateway.tasks.model import Withheld
from gateway.tasks.relay import decode_answer, encode_answer, partner_answers
from gateway.tasks.replicas import SharedTaskBroker
from gateway.tasks.store import DONE, partner_tasks
from tests.support.databases import pg_schema_url

pytestmark = pytest.mark.postgres

ORG = "gemeente-rr"
OTHER = "politie-rr"
HIT = partner_pb2.TASK_KIND_HIT_QUERY
DELIVERY = partner_pb2.TASK_KIND_FACT_DELIVERY


@pytest.fixture
def url() -> Iterator[str]:
    yield from pg_schema_url()


@pytest.fixture
def vault() -> FactVault:
    return FactVault(os.urandom(32))


@pytest.fixture
async def pair(url: str, vault: FactVault) -> AsyncIterator[tuple[SharedTaskBroker, ...]]:
    """Replica A and replica B: two engines (two pools), two brokers, one schema."""
    engines = [make_engine(url), make_engine(url)]
    migrate(engines[0])
    brokers = [SharedTaskBroker(engine, vault) for engine in engines]
    for broker in brokers:
        await broker.recover()
    yield tuple(brokers)
    for broker in brokers:
        await broker.close()
    for engine in engines:
        engine.dispose()


def task(kind: partner_pb2.TaskKind.ValueType = HIT) -> partner_pb2.PartnerTask:
    return partner_pb2.PartnerTask(
        kind=kind,
        purpose=common_pb2.Purpose(processing_activity_id="zvh.complexe-casuistiek"),
        case_ref=common_pb2.CaseRef(node_id="zvh-rotterdam-rijnmond", case_id="c" * 32),
    )


async def test_a_task_made_on_one_replica_wakes_a_stream_on_the_other(
    pair: tuple[SharedTaskBroker, ...], monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = pair
    # No poll would find it within the test's wait: only the notification can.
    monkeypatch.setattr(replicas, "POLL_SECONDS", 30.0)
    stream = a.stream(ORG, [])
    first = asyncio.ensure_future(anext(stream))
    await asyncio.sleep(0.5)  # the stream has found the table empty and waits
    assert not first.done()
    started = time.monotonic()
    sent = await b.send(ORG, task(DELIVERY), subject="ab" * 32, timeout=30)
    got = await asyncio.wait_for(first, 5)
    assert got.task_id == sent.task.task_id
    assert time.monotonic() - started < 5
    await stream.aclose()


async def test_an_answer_taken_on_one_replica_reaches_the_asker_on_the_other(
    pair: tuple[SharedTaskBroker, ...],
) -> None:
    a, b = pair
    stream = a.stream(ORG, [HIT])
    pending = await b.send(ORG, task(), subject="ab" * 32, timeout=30)
    waiting = asyncio.ensure_future(b.wait(pending))
    got = await asyncio.wait_for(anext(stream), 5)
    with pytest.raises(TaskNotYoursError):
        await a.claim_open(got.task_id, OTHER)
    claimed = await a.claim_open(got.task_id, ORG)
    assert claimed.subject == "ab" * 32 and claimed.task == pending.task
    answer = partner_pb2.AnswerHitRequest(task_id=got.task_id, known=True, contact_handle="x")
    assert await a.deliver(claimed, answer)
    assert await asyncio.wait_for(waiting, 5) == answer
    assert not await a.deliver(claimed, answer), "a second answer must find the task settled"
    with a._engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(partner_answers)).scalar() == 0
        state = conn.execute(
            sa.select(partner_tasks.c.state).where(partner_tasks.c.id == got.task_id)
        ).scalar()
    assert state == DONE
    await stream.aclose()


async def test_a_question_taken_by_a_stream_on_the_other_replica_counts_as_taken(
    pair: tuple[SharedTaskBroker, ...],
) -> None:
    # So a round reports "deadline", not "no task stream", for a partner streaming elsewhere.
    a, b = pair
    unseen = await b.send(OTHER, task(), subject="cd" * 32, timeout=0.3)
    pending = await b.send(ORG, task(), subject="ab" * 32, timeout=0.3)
    stream = a.stream(ORG, [HIT])
    got = await asyncio.wait_for(anext(stream), 5)
    assert got.task_id == pending.task.task_id
    assert await b.wait(pending) is None
    assert await b.wait(unseen) is None
    assert await b.taken(pending)
    assert not await b.taken(unseen)
    await stream.aclose()


async def test_each_task_goes_to_one_of_two_streams_and_a_new_stream_gets_the_unsettled(
    pair: tuple[SharedTaskBroker, ...],
) -> None:
    a, b = pair
    streams = [a.stream(ORG, []), b.stream(ORG, [])]
    seen: list[str] = []

    async def drain(stream: AsyncIterator[partner_pb2.PartnerTask]) -> None:
        async for got in stream:
            seen.append(got.task_id)

    drains = [asyncio.ensure_future(drain(s)) for s in streams]
    sent = [
        (await b.send(ORG, task(DELIVERY), subject="", timeout=30)).task.task_id for _ in range(40)
    ]
    for _ in range(100):
        if len(seen) >= 40:
            break
        await asyncio.sleep(0.05)
    for job in drains:
        job.cancel()
    await asyncio.gather(*drains, return_exceptions=True)
    assert sorted(seen) == sorted(sent), "every task once, none twice"
    acked = sent[:10]
    for task_id in acked:
        await a.acknowledge(task_id, ORG)
    again = b.stream(ORG, [DELIVERY])
    redelivered = [(await asyncio.wait_for(anext(again), 5)).task_id for _ in range(30)]
    assert sorted(redelivered) == sorted(sent[10:])
    await again.aclose()


def test_the_answers_migration_matches_the_declared_table(url: str) -> None:
    engine = make_engine(url)
    try:
        migrate(engine)
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            diffs = [d for d in compare_metadata(context, metadata) if "partner_answers" in repr(d)]
        assert diffs == []
        command.downgrade(alembic_config(engine), "0006_fact_retention")
        assert "partner_answers" not in sa.inspect(engine).get_table_names()
        migrate(engine)
        assert "partner_answers" in sa.inspect(engine).get_table_names()
    finally:
        engine.dispose()


def test_an_answer_survives_its_encoding() -> None:
    hit = partner_pb2.AnswerHitRequest(task_id="t1", known=True, contact_handle="team-a")
    assert decode_answer(encode_answer(hit)) == hit
    assert decode_answer(encode_answer(Withheld(("r1", "r2")))) == Withheld(("r1", "r2"))
    assert decode_answer(encode_answer(Withheld())) == Withheld()
    with pytest.raises(ValueError, match="not an encoded answer"):
        decode_answer(b"?junk")
