"""Fact deliveries over mTLS: durable across a node restart, sent again until acknowledged.

The node is RR of the flow pair (SQLite, then PostgreSQL); partners are the
real runner over :class:`MemoryPartner` or a bare ``ReceiveTasks`` stream.
"""

from __future__ import annotations

import asyncio

import grpc
import pytest
import sqlalchemy as sa
from schakel.v1 import case_pb2, case_pb2_grpc, common_pb2, partner_pb2, partner_pb2_grpc

from gateway.tasks.store import partner_tasks
from tests.support.caseflow import (
    ANTECEDENTEN,
    PARTICIPANTS,
    accept,
    deliveries,
    fact,
    node,
    open_case,
    partners,
    regie,
)
from tests.support.flow import Flow, MemoryPartner
from tests.support.pki import RR
from tests.support.referrals import BSN, PURPOSE
from tests.support.streams import restart, until_streams

DELIVERY = partner_pb2.TASK_KIND_FACT_DELIVERY
SECRET = "Zebrapad-Kwetsbaar-7781"


def task_rows(flow: Flow) -> list[sa.Row[tuple[object, ...]]]:
    with node(flow).parts.engine.connect() as conn:
        return list(conn.execute(sa.select(partner_tasks)))


def raw(row: sa.Row[tuple[object, ...]]) -> bytes:
    """Every column of ``row`` as the bytes the database gave back."""
    return b"|".join(v if isinstance(v, bytes) else str(v).encode() for v in row._mapping.values())


async def until_done(flow: Flow, task_id: str) -> sa.Row[tuple[object, ...]]:
    for _ in range(300):
        row = next(r for r in task_rows(flow) if r.id == task_id)
        if row.state == "done":
            return row
        await asyncio.sleep(0.02)
    raise AssertionError(f"task {task_id} was not settled")


async def test_a_delivery_waiting_for_its_partner_survives_a_node_restart(flow: Flow) -> None:
    sims = partners()
    types = dict(PARTICIPANTS)
    runners = {o: await flow.run_partner(RR, o, types[o], sims[o]) for o, _ in PARTICIPANTS}
    ref = await open_case(flow)
    async with regie(flow) as channel:
        stub = case_pb2_grpc.CaseServiceStub(channel)
        await accept(stub, ref)
        runners["gemeente-rr"].stop()  # gemeente's system goes down
        await until_streams(flow, "gemeente-rr", 0)
        result = await stub.StartUitvraag(
            case_pb2.StartUitvraagRequest(
                purpose=PURPOSE, case_ref=ref, categories=[ANTECEDENTEN], deadline_ms=3000
            )
        )
    assert {p.provider.org_id: p.answered for p in result.providers}["politie-rr"]
    await deliveries(sims["ggz-rr"], 1)
    assert sims["gemeente-rr"].delivered == []
    (waiting,) = [r for r in task_rows(flow) if r.org_id == "gemeente-rr" and r.kind == DELIVERY]
    assert (waiting.state, waiting.attempts) == ("queued", 0)
    stored = raw(waiting)

    await restart(flow)
    again = MemoryPartner(sims["gemeente-rr"].records)
    await flow.run_partner(RR, "gemeente-rr", "gemeente", again)
    ((bsn, task),) = await deliveries(again, 1)
    assert task.task_id == waiting.id
    assert bsn == BSN  # still in gemeente's own domain after the restart
    (released,) = task.facts
    assert released.category == ANTECEDENTEN
    assert released.fields["aantal"].text == "3-5"
    row = await until_done(flow, task.task_id)  # the runner acknowledged it
    assert (row.attempts, row.sealed, row.subject_pseudonym) == (1, None, None)

    # What waited in the table was sealed: no fact, value or subject in the clear.
    assert released.SerializeToString() not in stored
    for value in released.fields.values():
        if value.text:
            assert value.text.encode() not in stored
    assert task.subject.b not in stored and task.subject.c not in stored
    assert BSN.encode() not in stored


async def test_a_delivery_is_sent_again_on_the_next_stream_until_acknowledged(
    flow: Flow,
) -> None:
    fed = flow.pair.fed
    broker = node(flow).parts.tasks
    release = common_pb2.Fact(category="sociaal.huisvesting")
    release.fields["status"].text = SECRET
    delivery = partner_pb2.PartnerTask(
        kind=DELIVERY, purpose=PURPOSE, case_ref=common_pb2.CaseRef(node_id=RR, case_id="c1")
    )
    delivery.facts.append(release)
    cred = fed.partner(RR, "gemeente-rr", "gemeente", force=True)
    async with flow.pair.channel(RR, cred) as channel:
        gemeente = partner_pb2_grpc.PartnerServiceStub(channel)
        request = partner_pb2.ReceiveTasksRequest(kinds=[DELIVERY])

        first = gemeente.ReceiveTasks(request)
        await until_streams(flow, "gemeente-rr", 1)
        await broker.send("gemeente-rr", delivery, subject="ab" * 32, timeout=60)
        got = await asyncio.wait_for(anext(aiter(first)), 5)
        assert got.task_id == delivery.task_id
        first.cancel()  # the stream breaks before gemeente stored the facts
        await until_streams(flow, "gemeente-rr", 0)
        assert SECRET.encode() not in b"".join(raw(r) for r in task_rows(flow))

        second = gemeente.ReceiveTasks(request)
        again = await asyncio.wait_for(anext(aiter(second)), 5)
        assert again == got  # the same task, the same id: an idempotency key
        await broker.settle()  # state changes are written in batches
        (row,) = task_rows(flow)
        assert (row.state, row.attempts) == ("sent", 2)

        audit = node(flow).parts.audit
        before = audit.head().size
        client = flow.client(RR, "gemeente-rr", "gemeente")
        async with client:
            ack = await client.acknowledge_task(again.task_id)
        assert ack.task_id == delivery.task_id
        assert audit.head().size == before  # acknowledgements are not audit records
        second.cancel()
        await until_streams(flow, "gemeente-rr", 0)
        (row,) = task_rows(flow)
        assert (row.state, row.sealed) == ("done", None)

        third = gemeente.ReceiveTasks(request)
        await until_streams(flow, "gemeente-rr", 1)
        control = partner_pb2.PartnerTask(kind=DELIVERY, purpose=PURPOSE)
        await broker.send("gemeente-rr", control, subject="cd" * 32, timeout=60)
        after = await asyncio.wait_for(anext(aiter(third)), 5)
        assert after.task_id == control.task_id  # the acknowledged one never came back
        third.cancel()


async def test_acknowledging_the_wrong_task_is_refused_and_changes_nothing(flow: Flow) -> None:
    fed = flow.pair.fed
    broker = node(flow).parts.tasks
    delivery = partner_pb2.PartnerTask(kind=DELIVERY, purpose=PURPOSE)
    delivery.facts.append(fact(ANTECEDENTEN, aantal=3))
    await broker.send("gemeente-rr", delivery, subject="ab" * 32, timeout=60)
    question = partner_pb2.PartnerTask(kind=partner_pb2.TASK_KIND_HIT_QUERY, purpose=PURPOSE)
    await broker.send("gemeente-rr", question, subject="ab" * 32, timeout=60)
    politie = fed.partner(RR, "politie-rr", "politie", force=True)
    gemeente = fed.partner(RR, "gemeente-rr", "gemeente", force=True)
    cases = [
        (politie, delivery.task_id, grpc.StatusCode.PERMISSION_DENIED, "another organisation"),
        (gemeente, "f" * 32, grpc.StatusCode.NOT_FOUND, "f" * 32),
        (gemeente, "", grpc.StatusCode.INVALID_ARGUMENT, "task_id is required"),
        (gemeente, question.task_id, grpc.StatusCode.INVALID_ARGUMENT, "HIT_QUERY"),
    ]
    for cred, task_id, code, words in cases:
        async with flow.pair.channel(RR, cred) as channel:
            stub = partner_pb2_grpc.PartnerServiceStub(channel)
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await stub.AcknowledgeTask(partner_pb2.AcknowledgeTaskRequest(task_id=task_id))
        assert err.value.code() is code, task_id
        assert words in (err.value.details() or "")
    await broker.settle()
    assert [r.state for r in task_rows(flow)] == ["queued", "queued"]

    async with flow.pair.channel(RR, gemeente) as channel:
        stub = partner_pb2_grpc.PartnerServiceStub(channel)
        await stub.AcknowledgeTask(partner_pb2.AcknowledgeTaskRequest(task_id=delivery.task_id))
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.AcknowledgeTask(partner_pb2.AcknowledgeTaskRequest(task_id=delivery.task_id))
    assert err.value.code() is grpc.StatusCode.NOT_FOUND
    assert delivery.task_id in (err.value.details() or "")
