"""The task broker on its table: persistence, redelivery, acknowledgement, recovery, purge.

Run against SQLite and PostgreSQL (``db_url``); streams are the broker's own
async generators, as ``ReceiveTasks`` iterates them.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from schakel.v1 import common_pb2, partner_pb2

from gateway.cases import FactVault
from gateway.storage import alembic_config, make_engine, metadata, migrate
from gateway.tasks.broker import (
    MAX_DELIVERY_ATTEMPTS,
    TaskBroker,
    TaskError,
    TaskKindError,
    TaskNotFoundError,
    TaskNotYoursError,
)
from gateway.tasks.store import DONE_KEPT, PURGE_BATCH, TaskStore, partner_tasks
from tests.support.pki import LogCapture

ORG = "gemeente-rr"
OTHER = "politie-rr"
SECRET = "Zebrapad-Kwetsbaar-7781"
"""A fact value distinctive enough to find in raw bytes."""
DELIVERY = partner_pb2.TASK_KIND_FACT_DELIVERY
HIT = partner_pb2.TASK_KIND_HIT_QUERY


@pytest.fixture
def engine(db_url: str) -> Iterator[sa.Engine]:
    eng = make_engine(db_url)
    migrate(eng)
    yield eng
    eng.dispose()


@pytest.fixture
def vault() -> FactVault:
    return FactVault(os.urandom(32))


@pytest.fixture
async def broker(engine: sa.Engine, vault: FactVault) -> AsyncIterator[TaskBroker]:
    made = TaskBroker(engine, vault)
    await made.recover()
    yield made
    await made.close()


def delivery(secret: str = SECRET) -> partner_pb2.PartnerTask:
    fact = common_pb2.Fact(category="sociaal.huisvesting")
    fact.fields["status"].text = secret
    return partner_pb2.PartnerTask(
        kind=DELIVERY,
        purpose=common_pb2.Purpose(processing_activity_id="zvh.complexe-casuistiek"),
        case_ref=common_pb2.CaseRef(node_id="zvh-rotterdam-rijnmond", case_id="c" * 32),
        subject=common_pb2.EncryptedPseudonym(
            b=os.urandom(32), c=os.urandom(32), public_key=os.urandom(32)
        ),
        facts=[fact],
    )


def subject() -> str:
    return os.urandom(32).hex()


def rows(engine: sa.Engine) -> dict[str, sa.Row[tuple[object, ...]]]:
    with engine.connect() as conn:
        return {r.id: r for r in conn.execute(sa.select(partner_tasks))}


async def first(stream: AsyncIterator[partner_pb2.PartnerTask]) -> partner_pb2.PartnerTask:
    return await asyncio.wait_for(anext(stream), 2)


async def test_the_migration_matches_the_declared_table(engine: sa.Engine) -> None:
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        diffs = [d for d in compare_metadata(context, metadata) if "partner_tasks" in repr(d)]
    assert diffs == []
    config = alembic_config(engine)
    command.downgrade(config, "0002_cases")
    assert "partner_tasks" not in sa.inspect(engine).get_table_names()
    command.upgrade(config, "head")
    assert "partner_tasks" in sa.inspect(engine).get_table_names()


async def test_a_task_is_stored_sealed_before_it_is_queued(
    broker: TaskBroker, engine: sa.Engine
) -> None:
    task = delivery()
    pseudonym = subject()
    pending = await broker.send(ORG, task, subject=pseudonym, timeout=60)
    row = rows(engine)[task.task_id]
    assert (row.org_id, row.kind, row.state, row.attempts) == (ORG, DELIVERY, "queued", 0)
    assert row.subject_pseudonym == pseudonym
    assert row.expires_at - row.created_at == timedelta(seconds=60)
    assert pending.expires > 0 and pending.answer is None
    raw = b"".join(v if isinstance(v, bytes) else str(v).encode() for v in row._mapping.values())
    assert SECRET.encode() not in raw
    for part in (task.subject.b, task.subject.c, task.facts[0].SerializeToString()):
        assert part not in raw
    assert task.SerializeToString() not in raw


async def test_a_taken_task_is_sent_again_on_the_next_stream_until_acknowledged(
    broker: TaskBroker, engine: sa.Engine
) -> None:
    task = delivery()
    await broker.send(ORG, task, subject=subject(), timeout=60)
    stream = broker.stream(ORG, [DELIVERY])
    got = await first(stream)
    assert got.task_id == task.task_id
    assert broker.streams(ORG) == 1
    await stream.aclose()  # broke before the partner acknowledged
    await broker.settle()  # state changes are written in batches
    assert rows(engine)[task.task_id].state == "sent"

    stream = broker.stream(ORG, [DELIVERY])
    again = await first(stream)
    assert again == got
    await broker.settle()
    row = rows(engine)[task.task_id]
    assert (row.state, row.attempts) == ("sent", 2)
    await broker.acknowledge(task.task_id, ORG)
    await stream.aclose()
    row = rows(engine)[task.task_id]
    assert (row.state, row.sealed, row.subject_pseudonym) == ("done", None, None)

    stream = broker.stream(ORG, [])
    later = delivery("later")
    await broker.send(ORG, later, subject=subject(), timeout=60)
    assert (await first(stream)).task_id == later.task_id  # not the acknowledged one
    await stream.aclose()


async def test_a_new_stream_resends_only_the_kinds_it_asks_for(broker: TaskBroker) -> None:
    task = delivery()
    await broker.send(ORG, task, subject=subject(), timeout=60)
    stream = broker.stream(ORG, [])
    assert (await first(stream)).task_id == task.task_id
    await stream.aclose()
    hits = broker.stream(ORG, [HIT])
    question = partner_pb2.PartnerTask(kind=HIT)
    pending = await broker.send(ORG, question, subject=subject(), timeout=60)
    assert (await first(hits)).task_id == question.task_id
    assert broker.resolve(pending, partner_pb2.AnswerHitRequest(task_id=question.task_id))
    assert isinstance(await broker.wait(pending), partner_pb2.AnswerHitRequest)
    deliveries = broker.stream(ORG, [DELIVERY])
    assert (await first(deliveries)).task_id == task.task_id
    await hits.aclose()
    await deliveries.aclose()


async def test_acknowledging_says_what_is_wrong_and_changes_nothing(
    broker: TaskBroker, engine: sa.Engine
) -> None:
    task = delivery()
    await broker.send(ORG, task, subject=subject(), timeout=60)
    question = partner_pb2.PartnerTask(kind=HIT)
    pending = await broker.send(ORG, question, subject=subject(), timeout=60)
    cases = [
        ("nope", ORG, TaskNotFoundError, "'nope'"),
        (task.task_id, OTHER, TaskNotYoursError, "another organisation"),
        (question.task_id, ORG, TaskKindError, "its answer acknowledges it"),
    ]
    for task_id, org_id, kind, words in cases:
        with pytest.raises(TaskError) as err:
            await broker.acknowledge(task_id, org_id)
        assert type(err.value) is kind
        assert words in str(err.value)
    await broker.settle()
    assert {r.state for r in rows(engine).values()} == {"queued"}
    assert len(rows(engine)) == 2
    await broker.acknowledge(task.task_id, ORG)
    with pytest.raises(TaskNotFoundError) as err:
        await broker.acknowledge(task.task_id, ORG)
    assert task.task_id in str(err.value)
    assert broker.claim(question.task_id, ORG) is pending  # still open for its answer


async def test_a_task_sent_too_often_is_dropped_with_a_warning(
    broker: TaskBroker, engine: sa.Engine, logs: LogCapture
) -> None:
    task = delivery()
    await broker.send(ORG, task, subject=subject(), timeout=60)
    for _ in range(MAX_DELIVERY_ATTEMPTS):
        stream = broker.stream(ORG, [])
        assert (await first(stream)).task_id == task.task_id
        await stream.aclose()
    stream = broker.stream(ORG, [])
    control = delivery("control")
    await broker.send(ORG, control, subject=subject(), timeout=60)
    assert (await first(stream)).task_id == control.task_id
    await stream.aclose()
    await broker.settle()
    row = rows(engine)[task.task_id]
    assert (row.state, row.attempts) == ("done", MAX_DELIVERY_ATTEMPTS)
    (dropped,) = logs.events("partner_task_dropped")
    assert dropped["task_id"] == task.task_id and dropped["org_id"] == ORG
    assert dropped["reason"] == "max_attempts"
    assert SECRET not in logs.stream.getvalue()


async def test_an_expired_task_is_never_sent_and_is_purged(
    broker: TaskBroker, engine: sa.Engine
) -> None:
    old = delivery("old")
    await broker.send(ORG, old, subject=subject(), timeout=0.05)
    await asyncio.sleep(0.1)
    fresh = delivery("fresh")
    await broker.send(ORG, fresh, subject=subject(), timeout=60)
    stream = broker.stream(ORG, [])
    assert (await first(stream)).task_id == fresh.task_id
    await stream.aclose()
    with pytest.raises(TaskError):
        await broker.acknowledge(old.task_id, ORG)
    assert await broker.purge_expired() == 1
    assert set(rows(engine)) == {fresh.task_id}
    assert await broker.purge_expired(now=datetime.now(UTC) + timedelta(minutes=2)) == 1
    assert rows(engine) == {}


async def test_done_tasks_are_purged_soon_after_in_batches_of_at_most_500(
    broker: TaskBroker, engine: sa.Engine, vault: FactVault
) -> None:
    store = TaskStore(engine, vault)
    now = store.now()
    tasks = [delivery(f"t{n}") for n in range(1100)]
    for n, task in enumerate(tasks):
        task.task_id = f"{n:032x}"
    made = [
        store.row(t, ORG, subject(), created_at=now, expires_at=now + timedelta(days=1))
        for t in tasks
    ]
    store.apply(made, {}, [t.task_id for t in tasks])  # answered or acknowledged at once
    deletes: list[int] = []

    def count(_conn: object, _cursor: object, statement: str, *_rest: object) -> None:
        if statement.lstrip().upper().startswith("DELETE"):
            deletes.append(getattr(_cursor, "rowcount", -1))

    sa.event.listen(engine, "after_cursor_execute", count)
    try:
        assert await broker.purge_expired(now=now + timedelta(seconds=30)) == 0
        assert len(rows(engine)) == len(tasks)  # a done row stays a little while
        assert await broker.purge_expired(now=now + DONE_KEPT + timedelta(seconds=5)) == len(tasks)
    finally:
        sa.event.remove(engine, "after_cursor_execute", count)
    assert rows(engine) == {}
    assert sorted(deletes, reverse=True) == [PURGE_BATCH, PURGE_BATCH, len(tasks) - 2 * PURGE_BATCH]


async def test_after_a_restart_deliveries_are_queued_again_and_questions_lapse(
    engine: sa.Engine, vault: FactVault, logs: LogCapture
) -> None:
    before = TaskBroker(engine, vault)
    await before.recover()
    queued, taken, expired = delivery("queued"), delivery("taken"), delivery("expired")
    await before.send(ORG, taken, subject=subject(), timeout=60)
    await before.send(ORG, queued, subject=subject(), timeout=60)
    await before.send(ORG, expired, subject=subject(), timeout=0.05)
    stream = before.stream(ORG, [])
    assert (await first(stream)).task_id == taken.task_id
    await stream.aclose()
    question = partner_pb2.PartnerTask(kind=HIT)
    await before.send(OTHER, question, subject=subject(), timeout=60)
    await asyncio.sleep(0.1)
    await before.settle()
    del before  # the process died after its last batch: nothing was closed

    after = TaskBroker(engine, vault)
    await after.recover()
    try:
        table = rows(engine)
        assert expired.task_id not in table
        assert table[question.task_id].state == "done"
        assert table[question.task_id].sealed is None
        line = logs.events("partner_tasks_recovered")[-1]
        assert (line["deliveries"], line["lapsed"], line["expired"]) == (2, 1, 1)
        stream = after.stream(ORG, [])
        assert [(await first(stream)).task_id for _ in range(2)] == [
            taken.task_id,
            queued.task_id,
        ]
        await after.settle()
        got = rows(engine)[taken.task_id]
        assert (got.state, got.attempts) == ("sent", 2)
        await stream.aclose()
        with pytest.raises(TaskNotFoundError):
            await after.acknowledge(question.task_id, OTHER)
    finally:
        await after.close()


async def test_a_row_moved_to_another_organisation_is_never_delivered(
    engine: sa.Engine, vault: FactVault, logs: LogCapture
) -> None:
    before = TaskBroker(engine, vault)
    moved, kept = delivery("moved"), delivery("kept")
    await before.send(ORG, moved, subject=subject(), timeout=60)
    await before.send(OTHER, kept, subject=subject(), timeout=60)
    with engine.begin() as conn:
        conn.execute(
            sa.update(partner_tasks).where(partner_tasks.c.id == moved.task_id).values(org_id=OTHER)
        )
    after = TaskBroker(engine, vault)
    await after.recover()
    try:
        stream = after.stream(OTHER, [])
        assert (await first(stream)).task_id == kept.task_id
        await stream.aclose()
        assert rows(engine)[moved.task_id].state == "done"
        (line,) = logs.events("partner_task_unreadable")
        assert line["task_id"] == moved.task_id
    finally:
        await after.close()


async def test_under_another_vault_key_nothing_is_delivered(
    engine: sa.Engine, vault: FactVault
) -> None:
    before = TaskBroker(engine, vault)
    task = delivery()
    await before.send(ORG, task, subject=subject(), timeout=60)
    after = TaskBroker(engine, FactVault(os.urandom(32)))
    await after.recover()
    try:
        assert rows(engine)[task.task_id].state == "done"
        with pytest.raises(TaskError):
            await after.acknowledge(task.task_id, ORG)
    finally:
        await after.close()


async def test_an_answered_question_is_done_and_keeps_no_content(
    broker: TaskBroker, engine: sa.Engine
) -> None:
    question = partner_pb2.PartnerTask(kind=HIT, categories=["bekend"])
    pending = await broker.send(ORG, question, subject=subject(), timeout=60)
    stream = broker.stream(ORG, [HIT])
    assert (await first(stream)).task_id == question.task_id
    assert broker.claim(question.task_id, ORG) is pending
    answer = partner_pb2.AnswerHitRequest(task_id=question.task_id, known=False)
    assert broker.resolve(pending, answer)
    assert await broker.wait(pending) == answer
    await broker.settle()
    row = rows(engine)[question.task_id]
    assert (row.state, row.attempts, row.sealed) == ("done", 1, None)
    with pytest.raises(TaskError):
        broker.claim(question.task_id, ORG)
    await stream.aclose()
