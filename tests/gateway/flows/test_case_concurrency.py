"""One case, one step at a time: every case action from several workers at once, over mTLS.

The procesregisseur's calls on one case follow each other, so a closure that
comes during an uitvraag waits for it, and a step that finds its case moved
on is refused with FAILED_PRECONDITION before it releases anything. A
partner's answer about a case that closed after the question left is
refused, and an uitvraag whose case closed underneath it (a change from
outside the node's lock) releases nothing.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import grpc
import pytest
from schakel.v1 import (
    audit_pb2,
    case_pb2,
    case_pb2_grpc,
    common_pb2,
    partner_pb2,
    partner_pb2_grpc,
)

from gateway.audit.records import decode
from gateway.audit.store import iter_leaves
from gateway.caselocks import CaseLocks
from gateway.deadline import start_call
from gateway.errors import TimedOutError
from tests.support.caseflow import (
    ANTECEDENTEN,
    HUISVESTING,
    IN_ZORG,
    PARTICIPANTS,
    accept,
    node,
    open_case,
    partners,
    regie,
)
from tests.support.flow import Flow, MemoryPartner
from tests.support.pki import HL, RR
from tests.support.referrals import PURPOSE, refer

ROUNDS = 4
WORKERS = 3
ALLOWED = {grpc.StatusCode.OK, grpc.StatusCode.FAILED_PRECONDITION}
CLOSING = {"CloseCase", "Reject", "HandOverCase"}


class SlowPartner(MemoryPartner):
    """Takes a while to find its facts, so an uitvraag is still waiting when others come."""

    def facts(self, pseudonym_hex: str, categories: Sequence[str]) -> list[common_pb2.Fact]:
        time.sleep(0.3)
        return super().facts(pseudonym_hex, categories)


@dataclass
class Outcome:
    case_id: str
    action: str
    trace_id: str
    code: grpc.StatusCode
    details: str


def _traced() -> tuple[str, list[tuple[str, str]]]:
    trace_id = os.urandom(16).hex()
    return trace_id, [("traceparent", f"00-{trace_id}-{os.urandom(8).hex()}-01")]


def actions(
    stub: case_pb2_grpc.CaseServiceAsyncStub, ref: common_pb2.CaseRef, worker: int
) -> dict[str, Callable[[list[tuple[str, str]]], Awaitable[object]]]:
    """Every CaseService action on the case ``ref``, as a worker would send it."""
    return {
        "StartTriage": lambda md: stub.StartTriage(
            case_pb2.StartTriageRequest(purpose=PURPOSE, case_ref=ref), metadata=md
        ),
        "Reject": lambda md: stub.Triage(
            case_pb2.TriageRequest(
                purpose=PURPOSE, case_ref=ref, accept=False, reason_code="niet-ontvankelijk"
            ),
            metadata=md,
        ),
        "Accept": lambda md: stub.Triage(
            case_pb2.TriageRequest(
                purpose=PURPOSE,
                case_ref=ref,
                accept=True,
                reason_code="ontvankelijk",
                participants=[
                    common_pb2.Participant(org_id=o, org_type=t, node_id=RR)
                    for o, t in PARTICIPANTS
                ],
            ),
            metadata=md,
        ),
        "AddParticipant": lambda md: stub.AddParticipant(
            case_pb2.AddParticipantRequest(
                purpose=PURPOSE,
                case_ref=ref,
                participant=common_pb2.Participant(
                    org_id="woonstad", org_type="woningcorporatie", node_id=RR
                ),
            ),
            metadata=md,
        ),
        "RecordGround": lambda md: stub.RecordGround(
            case_pb2.RecordGroundRequest(
                purpose=PURPOSE,
                case_ref=ref,
                kind=case_pb2.GROUND_KIND_CONSENT,
                category=IN_ZORG,
                provider_org_id="ggz-rr",
                evidence_ref=f"toestemming-{worker}",
            ),
            metadata=md,
        ),
        "RunHitNoHit": lambda md: stub.RunHitNoHit(
            case_pb2.RunHitNoHitRequest(purpose=PURPOSE, case_ref=ref, deadline_ms=1000),
            metadata=md,
        ),
        "StartUitvraag": lambda md: stub.StartUitvraag(
            case_pb2.StartUitvraagRequest(
                purpose=PURPOSE,
                case_ref=ref,
                categories=[ANTECEDENTEN, HUISVESTING],
                deadline_ms=3000,
            ),
            metadata=md,
        ),
        "SetBottlenecks": lambda md: stub.SetBottlenecks(
            case_pb2.SetBottlenecksRequest(purpose=PURPOSE, case_ref=ref, tags=["huisvesting"]),
            metadata=md,
        ),
        "CloseCase": lambda md: stub.CloseCase(
            case_pb2.CloseCaseRequest(purpose=PURPOSE, case_ref=ref, outcome="doelen-bereikt"),
            metadata=md,
        ),
        "HandOverCase": lambda md: stub.HandOverCase(
            case_pb2.HandOverCaseRequest(
                purpose=PURPOSE,
                case_ref=ref,
                target_node_id=HL,
                idempotency_key=f"verhuizing-{worker}",
                reason_code="betrokkene-verhuisd",
            ),
            metadata=md,
        ),
    }


async def worker(
    stub: case_pb2_grpc.CaseServiceAsyncStub,
    ref: common_pb2.CaseRef,
    number: int,
    rng: random.Random,
    out: list[Outcome],
) -> None:
    steps = list(actions(stub, ref, number).items())
    rng.shuffle(steps)
    # Besides the random order, the race that matters most every time: a
    # closure that comes while an uitvraag waits for its (slow) answers.
    first = {0: "StartUitvraag", 1: "CloseCase"}.get(number)
    steps.sort(key=lambda step: step[0] != first)
    if number == 1:
        await asyncio.sleep(0.1)
    for name, send in steps:
        trace_id, metadata = _traced()
        try:
            await send(metadata)
        except grpc.aio.AioRpcError as exc:
            out.append(Outcome(ref.case_id, name, trace_id, exc.code(), exc.details() or ""))
        else:
            out.append(Outcome(ref.case_id, name, trace_id, grpc.StatusCode.OK, ""))


def audit_records(flow: Flow) -> list[audit_pb2.AuditRecord]:
    with node(flow).parts.engine.connect() as conn:
        return [decode(d) for _, _, d in iter_leaves(conn) if d is not None]


async def test_every_case_action_from_several_workers_runs_one_step_at_a_time(
    flow: Flow,
) -> None:
    sims = partners()
    types = dict(PARTICIPANTS) | {"woonstad": "woningcorporatie"}
    for org_id, sim in sims.items():
        slow = SlowPartner(sim.records)
        await flow.run_partner(RR, org_id, types[org_id], slow)
    rng = random.Random(14)
    outcomes: list[Outcome] = []
    async with regie(flow) as channel:
        stub = case_pb2_grpc.CaseServiceStub(channel)
        for round_ in range(ROUNDS):
            ref = await open_case(flow, key=f"ref-{round_}")
            if round_:  # the first round starts in aanmelding, the others accepted
                await accept(stub, ref)
            await asyncio.gather(*(worker(stub, ref, n, rng, outcomes) for n in range(WORKERS)))
    await node(flow).parts.tasks.settle()

    unexpected = [o for o in outcomes if o.code not in ALLOWED]
    # Policy may refuse a hand-over in some phases; that is a decision, not a race.
    unexpected = [
        o
        for o in unexpected
        if not (o.action == "HandOverCase" and o.code is grpc.StatusCode.PERMISSION_DENIED)
    ]
    assert unexpected == [], unexpected
    assert any(o.action == "StartUitvraag" and o.code is grpc.StatusCode.OK for o in outcomes)

    registry = node(flow).parts.registry
    by_case: dict[str, list[Outcome]] = {}
    for o in outcomes:
        by_case.setdefault(o.case_id, []).append(o)
    for case_id, done in by_case.items():
        closed_by = [o.action for o in done if o.action in CLOSING and o.code is grpc.StatusCode.OK]
        assert len(closed_by) <= 1, (case_id, closed_by)
        case = registry.get(case_id)
        assert case.is_open == (not closed_by)
        if case.closed_at is not None:
            assert all(f.received_at <= case.closed_at for f in registry.facts(case_id))

    # A call that failed left no release on record as if it had gone out: every
    # OK record with a decision in its trace is followed by an ERROR twin.
    failed = {o.trace_id for o in outcomes if o.code is not grpc.StatusCode.OK}
    released: dict[tuple[str, str, str], int] = {}
    for r in audit_records(flow):
        if r.trace_id not in failed or not r.HasField("decision"):
            continue
        key = (r.trace_id, r.name, r.requester)
        released[key] = released.get(key, 0) + (1 if r.status == audit_pb2.SPAN_STATUS_OK else -1)
    assert {k: v for k, v in released.items() if v > 0} == {}


async def _first_task(
    stream: grpc.aio.UnaryStreamCall[partner_pb2.ReceiveTasksRequest, partner_pb2.PartnerTask],
) -> partner_pb2.PartnerTask:
    async for task in stream:
        return task
    raise AssertionError("the task stream ended")


async def _until_stream(flow: Flow, org_id: str) -> None:
    broker = node(flow).parts.tasks
    for _ in range(300):
        if broker.streams(org_id):
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{org_id} did not open its task stream")


async def test_answers_about_a_closed_case_are_refused_and_its_uitvraag_releases_nothing(
    flow: Flow,
) -> None:
    cred = flow.pair.fed.partner(RR, "ggz-rr", "ggz", force=True)
    async with regie(flow) as officer, flow.pair.channel(RR, cred) as channel:
        stub = case_pb2_grpc.CaseServiceStub(officer)
        ggz = partner_pb2_grpc.PartnerServiceStub(channel)

        # A hit/no-hit question, then the case is rejected before ggz answers.
        stream = ggz.ReceiveTasks(
            partner_pb2.ReceiveTasksRequest(kinds=[partner_pb2.TASK_KIND_HIT_QUERY])
        )
        await _until_stream(flow, "ggz-rr")
        ref = (await refer(flow, RR, "politie-rr", "politie", key="ref-hit")).case_ref
        task = await asyncio.wait_for(_first_task(stream), 15)
        stream.cancel()
        await stub.StartTriage(case_pb2.StartTriageRequest(purpose=PURPOSE, case_ref=ref))
        await stub.Triage(
            case_pb2.TriageRequest(
                purpose=PURPOSE, case_ref=ref, accept=False, reason_code="niet-ontvankelijk"
            )
        )
        with pytest.raises(grpc.aio.AioRpcError) as hit:
            await ggz.AnswerHit(
                partner_pb2.AnswerHitRequest(
                    task_id=task.task_id, purpose=PURPOSE, case_ref=ref, known=False
                )
            )
        assert hit.value.code() is grpc.StatusCode.FAILED_PRECONDITION
        assert "closed" in (hit.value.details() or "")

        # An uitvraag question, then the case closes from outside the node's lock
        # (as another process would) before ggz answers.
        ref = await open_case(flow, key="ref-facts")
        await accept(stub, ref)
        await stub.RecordGround(
            case_pb2.RecordGroundRequest(
                purpose=PURPOSE,
                case_ref=ref,
                kind=case_pb2.GROUND_KIND_CONSENT,
                category=IN_ZORG,
                provider_org_id="ggz-rr",
                evidence_ref="toestemming-1",
            )
        )
        stream = ggz.ReceiveTasks(
            partner_pb2.ReceiveTasksRequest(kinds=[partner_pb2.TASK_KIND_FACT_QUERY])
        )
        await _until_stream(flow, "ggz-rr")
        before = node(flow).parts.audit.head().size
        trace_id, metadata = _traced()
        uitvraag = asyncio.ensure_future(
            stub.StartUitvraag(
                case_pb2.StartUitvraagRequest(
                    purpose=PURPOSE, case_ref=ref, categories=[IN_ZORG], deadline_ms=1500
                ),
                metadata=metadata,
            )
        )
        task = await asyncio.wait_for(_first_task(stream), 15)
        stream.cancel()
        registry = node(flow).parts.registry
        await asyncio.to_thread(
            registry.close, ref.case_id, outcome="doelen-bereikt", retention_days=30
        )
        answer = common_pb2.Fact(category=IN_ZORG)
        answer.fields["in_zorg"].flag = True
        with pytest.raises(grpc.aio.AioRpcError) as facts:
            await ggz.AnswerFacts(
                partner_pb2.AnswerFactsRequest(
                    task_id=task.task_id, purpose=PURPOSE, case_ref=ref, facts=[answer]
                )
            )
        assert facts.value.code() is grpc.StatusCode.FAILED_PRECONDITION
        with pytest.raises(grpc.aio.AioRpcError) as late:
            await uitvraag
        assert late.value.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert registry.facts(ref.case_id) == []
    with node(flow).parts.engine.connect() as conn:
        written = [decode(d) for _, _, d in iter_leaves(conn, start=before) if d is not None]
    releases = [r for r in written if r.trace_id == trace_id and r.HasField("decision")]
    assert releases == []


async def test_case_locks_let_one_action_at_a_time_and_a_waiter_give_up_at_its_deadline() -> None:
    locks = CaseLocks()
    order: list[str] = []

    async def step(name: str, busy: float) -> None:
        async with locks.hold("c" * 32):
            order.append(f"{name} in")
            await asyncio.sleep(busy)
            order.append(f"{name} out")

    async def impatient() -> None:
        start_call(0.3)  # the caller's gRPC deadline
        async with locks.hold("c" * 32):
            raise AssertionError("the lock was held by another action")

    await asyncio.gather(step("uitvraag", 0.2), step("close", 0.0))
    assert order == ["uitvraag in", "uitvraag out", "close in", "close out"]
    async with locks.hold("c" * 32):
        started = time.monotonic()
        with pytest.raises(TimedOutError):
            await asyncio.create_task(impatient())
        assert time.monotonic() - started < 0.3
    assert locks._held == {}  # nothing is kept for cases no action is on
