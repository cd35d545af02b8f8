"""No audit record, no release: the case flow when the audit log cannot be written.

The failure is a real one, made in the database: a trigger makes the insert
of an audit leaf fail for the records of one caller (a partner answering, or
the procesregisseur), so only the crossing under test loses its record while
the rest of the node works on. Each call whose record is lost must answer
``UNAVAILABLE`` and leave no trace of what it carried: no hit counted, no
fact stored or delivered, no question sent.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator

import grpc
import pytest
import sqlalchemy as sa
from schakel.v1 import case_pb2, case_pb2_grpc, partner_pb2, partner_pb2_grpc
from schakel.v1.audit_pb2 import AuditRecord
from sqlalchemy import Engine

from gateway.audit.records import decode
from gateway.audit.store import iter_leaves
from gateway.flows.crossing import AUDIT_FAILED
from tests.support.caseflow import (
    ANTECEDENTEN,
    HUISVESTING,
    accept,
    fact,
    node,
    open_case,
    partners,
    regie,
    start_partners,
)
from tests.support.flow import Flow, MemoryPartner
from tests.support.pki import RR
from tests.support.referrals import PURPOSE

FAULT = "schakel_test_audit_fault"


@contextlib.contextmanager
def audit_fails_for(engine: Engine, caller_uri: str) -> Iterator[None]:
    """While inside, every audit leaf whose caller is ``caller_uri`` fails to insert."""
    quoted = caller_uri.replace("'", "''")
    if engine.dialect.name == "sqlite":
        create = [
            f"CREATE TRIGGER {FAULT} BEFORE INSERT ON audit_leaf WHEN NEW.peer = '{quoted}' "
            "BEGIN SELECT RAISE(ABORT, 'simulated storage failure'); END"
        ]
        drop = [f"DROP TRIGGER {FAULT}"]
    else:
        create = [
            f"CREATE FUNCTION {FAULT}() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN RAISE EXCEPTION 'simulated storage failure'; END $$",
            f"CREATE TRIGGER {FAULT} BEFORE INSERT ON audit_leaf FOR EACH ROW "
            f"WHEN (NEW.peer = '{quoted}') EXECUTE FUNCTION {FAULT}()",
        ]
        drop = [f"DROP TRIGGER {FAULT} ON audit_leaf", f"DROP FUNCTION {FAULT}()"]
    with engine.begin() as conn:
        for statement in create:
            conn.execute(sa.text(statement))
    try:
        yield
    finally:
        with engine.begin() as conn:
            for statement in drop:
                conn.execute(sa.text(statement))


def partner_uri(org_id: str) -> str:
    """The certificate URI of a partner of RR, as its audit records name it."""
    return f"schakel://partner/{RR}/{org_id}"


def records(flow: Flow) -> list[AuditRecord]:
    """Every record in RR's audit log."""
    with node(flow).parts.engine.connect() as conn:
        return [decode(data) for _, _, data in iter_leaves(conn) if data is not None]


def answers_by(flow: Flow, method: str, org_id: str) -> int:
    """How many ``method`` records ``org_id`` has in RR's log."""
    return sum(
        r.name.endswith(f"/{method}") and r.requester == partner_uri(org_id) for r in records(flow)
    )


async def open_stream(
    flow: Flow, stub: partner_pb2_grpc.PartnerServiceAsyncStub, org_id: str, kind: int
) -> grpc.aio.UnaryStreamCall[partner_pb2.ReceiveTasksRequest, partner_pb2.PartnerTask]:
    """A raw task stream of ``org_id`` for tasks of ``kind``, once the node has it open."""
    stream = stub.ReceiveTasks(partner_pb2.ReceiveTasksRequest(kinds=[kind]))  # type: ignore[list-item]
    broker = node(flow).parts.tasks
    for _ in range(200):
        if broker.streams(org_id):
            return stream
        await asyncio.sleep(0.01)
    raise AssertionError(f"{org_id} did not get its task stream")


async def until(predicate: Callable[[], bool], what: str, timeout: float = 5.0) -> None:
    """Wait until ``predicate()`` is true."""
    for _ in range(int(timeout / 0.02)):
        if predicate():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


async def test_a_hit_answer_without_its_record_is_refused_and_not_counted(flow: Flow) -> None:
    gemeente = MemoryPartner({})
    await flow.run_partner(RR, "gemeente-rr", "gemeente", gemeente)
    ref = await open_case(flow)
    assert answers_by(flow, "AnswerHit", "gemeente-rr") == 1  # the referral's own round
    cred = flow.pair.fed.partner(RR, "ggz-rr", "ggz", force=True)
    async with regie(flow) as channel, flow.pair.channel(RR, cred) as ggz_channel:
        ggz = partner_pb2_grpc.PartnerServiceStub(ggz_channel)
        stream = await open_stream(flow, ggz, "ggz-rr", partner_pb2.TASK_KIND_HIT_QUERY)
        round_ = asyncio.ensure_future(
            case_pb2_grpc.CaseServiceStub(channel).RunHitNoHit(
                case_pb2.RunHitNoHitRequest(purpose=PURPOSE, case_ref=ref, deadline_ms=2000)
            )
        )
        task = await asyncio.wait_for(anext(aiter(stream)), 5)
        # Gemeente answers first, so its record is never in the batch that fails.
        await until(lambda: answers_by(flow, "AnswerHit", "gemeente-rr") == 2, "gemeente")
        with audit_fails_for(node(flow).parts.engine, partner_uri("ggz-rr")):
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await ggz.AnswerHit(
                    partner_pb2.AnswerHitRequest(
                        task_id=task.task_id,
                        purpose=task.purpose,
                        case_ref=task.case_ref,
                        known=True,
                        contact_handle="crisisdienst@ggz-rr.example",
                    )
                )
            result = await round_
        stream.cancel()
    assert err.value.code() is grpc.StatusCode.UNAVAILABLE
    assert err.value.details() == AUDIT_FAILED
    assert [h.org_id for h in result.hits] == []
    assert "ggz-rr" in result.unanswered
    assert "gemeente-rr" in result.no_hit  # the round itself went on
    assert [h.org_id for h in node(flow).parts.registry.get(ref.case_id).hits] == []
    assert answers_by(flow, "AnswerHit", "ggz-rr") == 0


async def test_a_facts_answer_without_its_record_is_refused_stored_nowhere_and_delivered_to_none(
    flow: Flow,
) -> None:
    sims = partners()
    for org_id, org_type in (("ggz-rr", "ggz"), ("gemeente-rr", "gemeente")):
        await flow.run_partner(RR, org_id, org_type, sims[org_id])
    ref = await open_case(flow)
    cred = flow.pair.fed.partner(RR, "politie-rr", "politie", force=True)
    async with regie(flow) as channel, flow.pair.channel(RR, cred) as politie_channel:
        stub = case_pb2_grpc.CaseServiceStub(channel)
        await accept(stub, ref)
        politie = partner_pb2_grpc.PartnerServiceStub(politie_channel)
        stream = await open_stream(flow, politie, "politie-rr", partner_pb2.TASK_KIND_FACT_QUERY)
        with audit_fails_for(node(flow).parts.engine, partner_uri("politie-rr")):
            uitvraag = asyncio.ensure_future(
                stub.StartUitvraag(
                    case_pb2.StartUitvraagRequest(
                        purpose=PURPOSE, case_ref=ref, categories=[ANTECEDENTEN], deadline_ms=2000
                    )
                )
            )
            task = await asyncio.wait_for(anext(aiter(stream)), 5)
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await politie.AnswerFacts(
                    partner_pb2.AnswerFactsRequest(
                        task_id=task.task_id,
                        purpose=task.purpose,
                        case_ref=task.case_ref,
                        facts=[fact(ANTECEDENTEN, aantal=4, zwaarste_soort="geweld")],
                    )
                )
            result = await uitvraag
        stream.cancel()
    assert err.value.code() is grpc.StatusCode.UNAVAILABLE
    assert err.value.details() == AUDIT_FAILED
    assert {p.provider.org_id: p.answered for p in result.providers}["politie-rr"] is False
    assert node(flow).parts.registry.facts(ref.case_id) == []
    # Deliveries would have been queued before StartUitvraag answered; give the
    # streams a moment to hand over anything that was.
    await asyncio.sleep(0.3)
    assert sims["ggz-rr"].delivered == [] and sims["gemeente-rr"].delivered == []
    assert sims["ggz-rr"].asked == [] and sims["gemeente-rr"].asked == []
    assert answers_by(flow, "AnswerFacts", "politie-rr") == 0
    assert not [
        r for r in records(flow) if r.name.endswith("/StartUitvraag") and r.HasField("decision")
    ]


async def test_an_uitvraag_without_its_record_is_refused_and_asks_no_partner(flow: Flow) -> None:
    sims = await start_partners(flow)
    ref = await open_case(flow)
    # The procesregisseur as the audit log names it: officer, node and role.
    officer = f"schakel://officer/{RR}/procesregisseur"
    request = case_pb2.StartUitvraagRequest(
        purpose=PURPOSE, case_ref=ref, categories=[ANTECEDENTEN, HUISVESTING], deadline_ms=2000
    )
    async with regie(flow) as channel:
        stub = case_pb2_grpc.CaseServiceStub(channel)
        await accept(stub, ref)
        with (
            audit_fails_for(node(flow).parts.engine, officer),
            pytest.raises(grpc.aio.AioRpcError) as err,
        ):
            await stub.StartUitvraag(request)
        await asyncio.sleep(0.3)  # long enough for a question to reach a task stream
        assert all(sim.asked == [] for sim in sims.values())
        # The refusal itself may be logged once the log is writable again; a decision may not.
        assert not [
            r for r in records(flow) if r.name.endswith("/StartUitvraag") and r.HasField("decision")
        ]

        # With the log writable again the same uitvraag goes out: the refusal was the audit's.
        result = await stub.StartUitvraag(request)
    assert err.value.code() is grpc.StatusCode.UNAVAILABLE
    assert "could not be written" in (err.value.details() or "")
    assert {p.provider.org_id for p in result.providers if p.answered} == {
        "politie-rr",
        "gemeente-rr",
    }
    assert sims["politie-rr"].asked and sims["gemeente-rr"].asked


async def test_an_uitvraag_whose_release_record_fails_stores_and_delivers_nothing(
    flow: Flow,
) -> None:
    sims = await start_partners(flow)
    ref = await open_case(flow)
    request = case_pb2.StartUitvraagRequest(
        purpose=PURPOSE, case_ref=ref, categories=[ANTECEDENTEN], deadline_ms=2000
    )
    async with regie(flow) as channel:
        stub = case_pb2_grpc.CaseServiceStub(channel)
        await accept(stub, ref)
        # Politie's answer and its release to ggz are written; its release to gemeente is not.
        with (
            audit_fails_for(node(flow).parts.engine, partner_uri("gemeente-rr")),
            pytest.raises(grpc.aio.AioRpcError) as err,
        ):
            await stub.StartUitvraag(request)
    assert err.value.code() is grpc.StatusCode.UNAVAILABLE
    assert "nothing was stored or delivered" in (err.value.details() or "")
    assert sims["politie-rr"].asked
    assert answers_by(flow, "AnswerFacts", "politie-rr") == 1
    await asyncio.sleep(0.3)  # long enough for a delivery to reach a task stream
    assert sims["ggz-rr"].delivered == [] and sims["gemeente-rr"].delivered == []
    assert node(flow).parts.registry.facts(ref.case_id) == []
