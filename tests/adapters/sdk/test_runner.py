"""The runner connects the SQL adapter to a simulated node over real mTLS and answers tasks."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest
import sqlalchemy as sa
import structlog
import yaml
from schakel.v1 import common_pb2, partner_pb2

from adapters.index import PseudonymIndex
from adapters.sdk import AdapterRunner, PartnerClient, PartnerRpcError, RetryPolicy
from adapters.sql import SqlAdapter, SqlMapping
from gateway.dev.fakedata import fake_bsns
from policy.pseudonyms import DomainKey, FederationKeys
from tests.support.fakedata import (
    POLICE_MAPPING,
    TEAMS,
    PoliceData,
    create_police_db,
    police_data,
)
from tests.support.partners import (
    POLICE,
    Pki,
    RunningNode,
    partner_client,
    start_node,
    until,
)
from tests.support.simnode import PURPOSE

FAST_RECONNECT = RetryPolicy(max_attempts=1_000_000, initial_backoff=0.02, max_backoff=0.1)


@dataclass
class Inbox:
    """The police partner's own handling of released facts, for the test to inspect."""

    received: list[tuple[Sequence[str], partner_pb2.PartnerTask]] = field(default_factory=list)

    def __call__(self, keys: Sequence[str], task: partner_pb2.PartnerTask) -> None:
        self.received.append((keys, task))


@dataclass
class Police:
    data: PoliceData
    adapter: SqlAdapter
    inbox: Inbox


@pytest.fixture
async def police(
    tmp_path: Path, client: PartnerClient, police_keys: DomainKey
) -> AsyncIterator[Police]:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'politie.db'}")
    data = police_data(persons=40)
    create_police_db(engine, data)
    index = PseudonymIndex(engine)
    index.create()
    inbox = Inbox()
    adapter = SqlAdapter(
        engine, SqlMapping.from_dict(yaml.safe_load(POLICE_MAPPING)), index, on_delivery=inbox
    )
    adapter.check()
    report = await index.sync(
        adapter.subjects(), lambda batch: client.pseudonymise(batch, purpose=PURPOSE), police_keys
    )
    assert report.added == 40
    yield Police(data, adapter, inbox)
    engine.dispose()


async def test_the_runner_answers_every_kind_of_task(
    sim: RunningNode, client: PartnerClient, police: Police, police_keys: DomainKey
) -> None:
    runner = AdapterRunner(client, police.adapter, keys=police_keys, reconnect=FAST_RECONNECT)
    serving = asyncio.create_task(runner.run())
    await asyncio.wait_for(runner.connected.wait(), 5)
    node = sim.node
    pid = next(p for p in police.data.persons if police.data.expected_antecedents(p))
    bsn, _, team = police.data.persons[pid]
    hit = node.queue_task(POLICE, partner_pb2.TASK_KIND_HIT_QUERY, id_value=bsn)
    miss = node.queue_task(POLICE, partner_pb2.TASK_KIND_HIT_QUERY, id_value=fake_bsns(1, 5)[0])
    ask = node.queue_task(
        POLICE,
        partner_pb2.TASK_KIND_FACT_QUERY,
        id_value=bsn,
        categories=("justitie.antecedenten", "zorg.in_zorg"),
    )
    released = common_pb2.Fact(category="sociaal.huisvesting")
    released.fields["status"].text = "dakloos"
    delivery = node.queue_task(
        POLICE, partner_pb2.TASK_KIND_FACT_DELIVERY, id_value=bsn, facts=(released,)
    )
    await until(lambda: len(node.recorded.hits) == 2 and ask in node.recorded.facts)
    await until(lambda: len(police.inbox.received) == 1)
    runner.stop()
    await asyncio.wait_for(serving, 5)

    assert node.recorded.hits[hit].known is True
    assert node.recorded.hits[hit].contact_handle == TEAMS[team]
    assert node.recorded.hits[miss].known is False
    assert node.recorded.hits[miss].contact_handle == ""
    facts = node.recorded.facts[ask].facts
    assert {f.fields["feit"].text for f in facts} == set(police.data.expected_antecedents(pid))
    assert {f.category for f in facts} == {"justitie.antecedenten"}
    keys, task = police.inbox.received[0]
    assert keys == (str(pid),)
    assert task.task_id == delivery
    assert task.facts[0].fields["status"].text == "dakloos"
    assert runner.stats["answered.hit_query"] == 2
    assert runner.stats["answered.fact_delivery"] == 1
    assert dict(node.recorded.acks) == {delivery: 1}


def _released() -> tuple[common_pb2.Fact, ...]:
    fact = common_pb2.Fact(category="sociaal.huisvesting")
    fact.fields["status"].text = "dakloos"
    return (fact,)


async def test_a_repeated_task_is_neither_delivered_nor_answered_twice(
    sim: RunningNode, client: PartnerClient, police: Police, police_keys: DomainKey
) -> None:
    runner = AdapterRunner(client, police.adapter, keys=police_keys, reconnect=FAST_RECONNECT)
    serving = asyncio.create_task(runner.run())
    await asyncio.wait_for(runner.connected.wait(), 5)
    node = sim.node
    bsn = next(iter(police.data.persons.values()))[0]
    delivery = node.queue_task(
        POLICE, partner_pb2.TASK_KIND_FACT_DELIVERY, id_value=bsn, facts=_released()
    )
    hit = node.queue_task(POLICE, partner_pb2.TASK_KIND_HIT_QUERY, id_value=bsn)
    await until(lambda: node.recorded.acks[delivery] == 1 and hit in node.recorded.hits)
    node.send_again(delivery)
    node.send_again(hit)
    await until(lambda: runner.stats["repeated"] == 2)
    runner.stop()
    await asyncio.wait_for(serving, 5)
    assert len(police.inbox.received) == 1
    assert node.recorded.acks[delivery] == 1
    assert node.recorded.calls["AnswerHit"] == 1
    assert runner.stats["answered.fact_delivery"] == 1


async def test_a_delivery_whose_acknowledgement_failed_is_only_acknowledged_when_sent_again(
    sim: RunningNode, client: PartnerClient, police: Police, police_keys: DomainKey
) -> None:
    runner = AdapterRunner(client, police.adapter, keys=police_keys, reconnect=FAST_RECONNECT)
    serving = asyncio.create_task(runner.run())
    await asyncio.wait_for(runner.connected.wait(), 5)
    node = sim.node
    bsn = next(iter(police.data.persons.values()))[0]
    node.fail_next["AcknowledgeTask"].append(grpc.StatusCode.INTERNAL)
    delivery = node.queue_task(
        POLICE, partner_pb2.TASK_KIND_FACT_DELIVERY, id_value=bsn, facts=_released()
    )
    await until(lambda: runner.stats["failed.fact_delivery"] == 1)
    assert node.recorded.acks[delivery] == 0
    node.send_again(delivery)
    await until(lambda: node.recorded.acks[delivery] == 1)
    runner.stop()
    await asyncio.wait_for(serving, 5)
    assert len(police.inbox.received) == 1  # the adapter got it once
    assert runner.stats["answered.fact_delivery"] == 1
    assert runner.stats["repeated"] == 1


async def test_the_runner_remembers_a_bounded_number_of_task_ids(
    sim: RunningNode, client: PartnerClient, police: Police, police_keys: DomainKey
) -> None:
    runner = AdapterRunner(
        client, police.adapter, keys=police_keys, reconnect=FAST_RECONNECT, remember=1
    )
    serving = asyncio.create_task(runner.run())
    await asyncio.wait_for(runner.connected.wait(), 5)
    node = sim.node
    bsn = next(iter(police.data.persons.values()))[0]
    ids = []
    for _ in range(2):  # one after the other, so the second is the one remembered
        ids.append(
            node.queue_task(
                POLICE, partner_pb2.TASK_KIND_FACT_DELIVERY, id_value=bsn, facts=_released()
            )
        )
        await until(lambda: node.recorded.acks[ids[-1]] == 1)
    first, second = ids
    node.send_again(second)  # still remembered: skipped
    node.send_again(first)  # forgotten: taken in again, which is why it must be idempotent
    await until(lambda: node.recorded.acks[first] == 2)
    runner.stop()
    await asyncio.wait_for(serving, 5)
    assert [t.task_id for _, t in police.inbox.received] == [first, second, first]
    assert node.recorded.acks[second] == 1


async def test_the_runner_needs_room_to_remember(
    client: PartnerClient, police: Police, police_keys: DomainKey
) -> None:
    with pytest.raises(ValueError, match="remember must be at least 1"):
        AdapterRunner(client, police.adapter, keys=police_keys, remember=0)


async def test_the_runner_reconnects_after_the_node_restarts(
    pki: Pki,
    federation: FederationKeys,
    sim: RunningNode,
    client: PartnerClient,
    police: Police,
    police_keys: DomainKey,
) -> None:
    runner = AdapterRunner(client, police.adapter, keys=police_keys, reconnect=FAST_RECONNECT)
    serving = asyncio.create_task(runner.run())
    await asyncio.wait_for(runner.connected.wait(), 5)
    bsn = next(iter(police.data.persons.values()))[0]

    await until(lambda: sim.node.streams_opened == 1)
    sim.node.drop_streams()
    await until(lambda: sim.node.streams_opened == 2)
    first = sim.node.queue_task(POLICE, partner_pb2.TASK_KIND_HIT_QUERY, id_value=bsn)
    await until(lambda: first in sim.node.recorded.hits)

    port = int(sim.target.rsplit(":", 1)[1])
    await sim.server.stop(grace=None)
    await until(lambda: not runner.connected.is_set())
    restarted = await start_node(pki, federation, port)
    try:
        await until(lambda: restarted.node.streams_opened >= 1, timeout=10)
        second = restarted.node.queue_task(POLICE, partner_pb2.TASK_KIND_HIT_QUERY, id_value=bsn)
        await until(lambda: second in restarted.node.recorded.hits, timeout=10)
        assert restarted.node.recorded.hits[second].known is True
        assert runner.stats["connects"] >= 3
    finally:
        runner.stop()
        await asyncio.wait_for(serving, 5)
        await restarted.server.stop(grace=None)


async def test_a_refused_certificate_stops_the_runner(
    pki: Pki, sim: RunningNode, police: Police, police_keys: DomainKey
) -> None:
    async with partner_client(pki, sim.target, foreign=True) as foreign:
        runner = AdapterRunner(foreign, police.adapter, keys=police_keys, reconnect=FAST_RECONNECT)
        with pytest.raises(PartnerRpcError) as err:
            await asyncio.wait_for(runner.run(), 5)
    assert err.value.code is grpc.StatusCode.PERMISSION_DENIED


async def test_lapsed_and_undecryptable_tasks_are_skipped_without_leaking(
    sim: RunningNode, client: PartnerClient, police: Police, police_keys: DomainKey
) -> None:
    runner = AdapterRunner(client, police.adapter, keys=police_keys, reconnect=FAST_RECONNECT)
    bsn = next(iter(police.data.persons.values()))[0]
    with structlog.testing.capture_logs() as logs:
        serving = asyncio.create_task(runner.run())
        await asyncio.wait_for(runner.connected.wait(), 5)
        sim.node.queue_task(POLICE, partner_pb2.TASK_KIND_HIT_QUERY, id_value=bsn, deadline_s=-1)
        sim.node.queue_task(
            POLICE,
            partner_pb2.TASK_KIND_HIT_QUERY,
            id_value=bsn,
            subject_domain="ggz-rijnmond",
        )
        good = sim.node.queue_task(POLICE, partner_pb2.TASK_KIND_HIT_QUERY, id_value=bsn)
        await until(lambda: good in sim.node.recorded.hits)
        runner.stop()
        await asyncio.wait_for(serving, 5)
    assert runner.stats["lapsed"] == 1
    assert runner.stats["failed.hit_query"] == 1
    assert any(e.get("error") == "PseudonymError" for e in logs)
    assert len(sim.node.recorded.hits) == 1
    assert bsn not in json.dumps(logs, default=str)


async def test_a_failing_source_fails_the_task_not_the_runner(
    sim: RunningNode, client: PartnerClient, police: Police, police_keys: DomainKey
) -> None:
    runner = AdapterRunner(client, police.adapter, keys=police_keys, reconnect=FAST_RECONNECT)
    serving = asyncio.create_task(runner.run())
    await asyncio.wait_for(runner.connected.wait(), 5)
    bsn = next(iter(police.data.persons.values()))[0]
    engine = police.adapter._engine  # the partner's own database, broken on purpose
    with engine.begin() as conn:
        conn.execute(sa.text("ALTER TABLE teams RENAME TO teams_old"))
    with structlog.testing.capture_logs() as logs:
        broken = sim.node.queue_task(POLICE, partner_pb2.TASK_KIND_HIT_QUERY, id_value=bsn)
        await until(lambda: runner.stats["failed.hit_query"] == 1)
    with engine.begin() as conn:
        conn.execute(sa.text("ALTER TABLE teams_old RENAME TO teams"))
    fixed = sim.node.queue_task(POLICE, partner_pb2.TASK_KIND_HIT_QUERY, id_value=bsn)
    await until(lambda: fixed in sim.node.recorded.hits)
    runner.stop()
    await asyncio.wait_for(serving, 5)
    assert broken not in sim.node.recorded.hits
    assert [e["error"] for e in logs if e["event"] == "task failed"] == ["OperationalError"]
    assert "teams" not in json.dumps(logs, default=str)
