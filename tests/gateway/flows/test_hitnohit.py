"""The task stream and the hit/no-hit round over mTLS, with simulated partner systems."""

from __future__ import annotations

import asyncio
import time

import grpc
import pytest
import sqlalchemy as sa
from schakel.v1 import audit_pb2, common_pb2, partner_pb2, partner_pb2_grpc

from adapters.sdk import decrypt_subject
from gateway.app import Node
from gateway.audit.records import decode
from gateway.audit.store import iter_leaves
from gateway.cases import Hit, HitAnswer
from gateway.deadline import Deadline
from gateway.flows.hitnohit import ROUND_METHOD, run_round
from policy import signing
from tests.support.flow import Flow, MemoryPartner, Record
from tests.support.pki import HL, RR, LogCapture
from tests.support.referrals import BSN, PURPOSE, refer

OTHER_BSN = "999999990"


def node(flow: Flow, node_id: str = RR) -> Node:
    return flow.pair.nodes[node_id]


async def test_referral_round_asks_local_partners_and_the_peer_and_records_hits(
    flow: Flow,
) -> None:
    ggz = MemoryPartner({BSN: Record("crisisdienst@ggz-rr.example")})
    gemeente = MemoryPartner({OTHER_BSN: Record("wijkteam@gemeente-rr.example")})
    politie = MemoryPartner({BSN: Record("wijkagent@politie-rr.example")})
    ggz_runner = await flow.run_partner(RR, "ggz-rr", "ggz", ggz)
    gemeente_runner = await flow.run_partner(RR, "gemeente-rr", "gemeente", gemeente)
    politie_runner = await flow.run_partner(RR, "politie-rr", "politie", politie)
    # HL already has an active case about the same person.
    await refer(flow, HL, "ggz-hl", "ggz")
    await node(flow, HL).parts.tasks.settle()

    answer = await refer(flow, RR, "politie-rr", "politie")
    assert answer.created
    await node(flow).parts.tasks.settle()

    case = node(flow).parts.registry.get(answer.case_ref.case_id)
    assert set(case.hits) == {
        Hit("ggz-rr", RR, "crisisdienst@ggz-rr.example"),
        Hit("", HL, f"procesregie@{HL}.example"),
    }
    assert ggz_runner.stats["answered.hit_query"] == 1
    assert gemeente_runner.stats["answered.hit_query"] == 1
    # The referrer already knows its own referral: it is not asked.
    assert politie_runner.stats["answered.hit_query"] == 0


async def test_a_retried_referral_opens_one_case_and_runs_one_round(flow: Flow) -> None:
    ggz = MemoryPartner({BSN: Record("crisisdienst@ggz-rr.example")})
    runner = await flow.run_partner(RR, "ggz-rr", "ggz", ggz)
    first = await refer(flow, RR, "politie-rr", "politie", key="same")
    again = await refer(flow, RR, "politie-rr", "politie", key="same")
    await node(flow).parts.tasks.settle()
    assert first.created and not again.created
    assert again.case_ref == first.case_ref
    with node(flow).parts.engine.connect() as conn:
        count = conn.execute(sa.text("SELECT count(*) FROM cases")).scalar_one()
    assert count == 1
    assert runner.stats["answered.hit_query"] == 1


async def test_a_partner_or_peer_that_is_down_makes_the_answer_partial_within_the_deadline(
    flow: Flow,
) -> None:
    slow = MemoryPartner({BSN: Record("wijkteam@gemeente-rr.example")}, delay=1.5)
    await flow.run_partner(RR, "gemeente-rr", "gemeente", slow)
    ggz = MemoryPartner({BSN: Record("crisisdienst@ggz-rr.example")})
    await flow.run_partner(RR, "ggz-rr", "ggz", ggz)
    hl = flow.pair.nodes.pop(HL)
    await hl.stop(grace=None)
    answer = await refer(flow, RR, "politie-rr", "politie")
    await node(flow).parts.tasks.settle()
    case = node(flow).parts.registry.get(answer.case_ref.case_id)
    caller = flow.pair.fed.officer(RR, "procesregisseur").identity

    started = time.monotonic()
    result = await run_round(
        node(flow).parts, case, caller=caller, method=ROUND_METHOD, deadline=Deadline.after(0.6)
    )
    elapsed = time.monotonic() - started

    assert elapsed < 1.2
    assert [h.org_id for h in result.hits] == ["ggz-rr"]
    assert result.unanswered == {"gemeente-rr": "deadline", HL: "down"}
    assert result.no_hit == []
    proto = result.to_proto(answer.case_ref)
    assert list(proto.unanswered) == sorted(["gemeente-rr", HL])


@pytest.mark.parametrize("contact", ["Jan de Vries, wijkagent", BSN, "geboren 12-03-1985"])
async def test_a_peers_hit_with_free_text_for_a_contact_is_not_passed_on(
    flow: Flow, monkeypatch: pytest.MonkeyPatch, contact: str
) -> None:
    """A peer's contact is checked like a partner's: a name, BSN or date never reaches the case."""
    lying = node(flow, HL).parts.registry
    monkeypatch.setattr(lying, "active_hit", lambda *_a, **_k: HitAnswer(True, contact))
    answer = await refer(flow, RR, "politie-rr", "politie")
    await node(flow).parts.tasks.settle()
    case = node(flow).parts.registry.get(answer.case_ref.case_id)
    caller = flow.pair.fed.officer(RR, "procesregisseur").identity
    result = await run_round(node(flow).parts, case, caller=caller, method=ROUND_METHOD)
    assert result.unanswered[HL] == "malformed answer"
    assert all(h.node_id != HL for h in result.hits)
    assert all(h.node_id != HL for h in node(flow).parts.registry.get(case.id).hits)


async def test_a_partner_without_a_stream_counts_as_unanswered(flow: Flow) -> None:
    answer = await refer(flow, RR, "politie-rr", "politie")
    await node(flow).parts.tasks.settle()
    case = node(flow).parts.registry.get(answer.case_ref.case_id)
    caller = flow.pair.fed.officer(RR, "procesregisseur").identity
    # The round waits its whole deadline for a partner that may still open its stream; 1.5 s
    # keeps that short while leaving the peer time to answer on a loaded machine.
    result = await run_round(
        node(flow).parts, case, caller=caller, method=ROUND_METHOD, deadline=Deadline.after(1.5)
    )
    assert result.unanswered == {"ggz-rr": "no task stream", "gemeente-rr": "no task stream"}
    assert result.no_hit == [HL]
    assert result.hits == []


async def _first_task(stream: grpc.aio.UnaryStreamCall) -> partner_pb2.PartnerTask:  # type: ignore[type-arg]
    async for task in stream:
        return task  # type: ignore[no-any-return]
    raise AssertionError("the stream ended without a task")


async def test_answer_hit_checks_the_task_and_audits_before_acknowledging(flow: Flow) -> None:
    fed = flow.pair.fed
    ggz_cred = fed.partner(RR, "ggz-rr", "ggz", force=True)
    gemeente_cred = fed.partner(RR, "gemeente-rr", "gemeente", force=True)
    async with (
        flow.pair.channel(RR, ggz_cred) as ggz_channel,
        flow.pair.channel(RR, gemeente_cred) as gemeente_channel,
    ):
        ggz = partner_pb2_grpc.PartnerServiceStub(ggz_channel)
        gemeente = partner_pb2_grpc.PartnerServiceStub(gemeente_channel)
        stream = ggz.ReceiveTasks(
            partner_pb2.ReceiveTasksRequest(kinds=[partner_pb2.TASK_KIND_HIT_QUERY])
        )
        broker = node(flow).parts.tasks
        for _ in range(200):
            if broker.streams("ggz-rr"):
                break
            await asyncio.sleep(0.01)
        answer = await refer(flow, RR, "politie-rr", "politie")
        task = await asyncio.wait_for(_first_task(stream), 5)
        assert task.kind == partner_pb2.TASK_KIND_HIT_QUERY
        assert task.case_ref == answer.case_ref
        assert list(task.categories) == ["bekend"]
        own = decrypt_subject(task.subject, flow.pair.keys.domain("ggz-rr").secret_key)
        index = MemoryPartner({BSN: Record("x@y.example")})
        client = flow.client(RR, "ggz-rr", "ggz")
        await index.build_index(client, flow.y, flow.pair.keys.domain("ggz-rr").secret_key)
        await client.close()
        assert index.index[own] == BSN  # the subject arrives in ggz-rr's own domain

        good = partner_pb2.AnswerHitRequest(
            task_id=task.task_id,
            purpose=PURPOSE,
            case_ref=task.case_ref,
            known=True,
            contact_handle="crisisdienst@ggz-rr.example",
        )
        audit = node(flow).parts.audit
        before = audit.head().size
        bad_cases: list[tuple[partner_pb2.AnswerHitRequest, grpc.StatusCode, str]] = []
        changed: list[tuple[dict[str, object], grpc.StatusCode, str]] = [
            ({"task_id": "nope"}, grpc.StatusCode.NOT_FOUND, "no open task"),
            ({"task_id": ""}, grpc.StatusCode.INVALID_ARGUMENT, "task_id is required"),
            (
                {"purpose": common_pb2.Purpose(processing_activity_id="zvh.other")},
                grpc.StatusCode.INVALID_ARGUMENT,
                "purpose",
            ),
            (
                {"case_ref": common_pb2.CaseRef(node_id=RR, case_id="c-other")},
                grpc.StatusCode.INVALID_ARGUMENT,
                "case_ref",
            ),
            ({"known": False}, grpc.StatusCode.INVALID_ARGUMENT, "must be empty"),
            ({"contact_handle": ""}, grpc.StatusCode.INVALID_ARGUMENT, "contact_handle"),
        ]
        for changes, code, words in changed:
            request = partner_pb2.AnswerHitRequest()
            request.CopyFrom(good)
            for name, value in changes.items():
                if isinstance(value, common_pb2.Purpose | common_pb2.CaseRef):
                    getattr(request, name).CopyFrom(value)
                else:
                    setattr(request, name, value)
            bad_cases.append((request, code, words))
        for request, code, words in bad_cases:
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await ggz.AnswerHit(request)
            assert err.value.code() is code, request
            assert words in (err.value.details() or "")
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await gemeente.AnswerHit(good)
        assert err.value.code() is grpc.StatusCode.PERMISSION_DENIED
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await ggz.AnswerFacts(
                partner_pb2.AnswerFactsRequest(
                    task_id=task.task_id, purpose=PURPOSE, case_ref=task.case_ref
                )
            )
        assert err.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert "HIT_QUERY" in (err.value.details() or "")
        # A refused answer to ggz's own task is recorded as refused, about the task's
        # subject; the others name no task of the caller. The task stays open.
        with node(flow).parts.engine.connect() as conn:
            refused = [decode(d) for _, _, d in iter_leaves(conn, start=before) if d is not None]
        subject = node(flow).parts.registry.get(answer.case_ref.case_id).subject
        assert len(refused) == 5
        assert {r.status for r in refused} == {audit_pb2.SPAN_STATUS_ERROR}
        assert {r.data_subject_id for r in refused} == {subject}

        ack = await ggz.AnswerHit(good)
        assert ack.task_id == task.task_id
        assert audit.head().size == before + len(refused) + 1
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await ggz.AnswerHit(good)
        assert err.value.code() is grpc.StatusCode.NOT_FOUND
        stream.cancel()
    await broker.settle()
    case = node(flow).parts.registry.get(answer.case_ref.case_id)
    assert Hit("ggz-rr", RR, "crisisdienst@ggz-rr.example") in case.hits


async def test_receive_tasks_refuses_an_unknown_kind(flow: Flow) -> None:
    cred = flow.pair.fed.partner(RR, "ggz-rr", "ggz", force=True)
    async with flow.pair.channel(RR, cred) as channel:
        stub = partner_pb2_grpc.PartnerServiceStub(channel)
        stream = stub.ReceiveTasks(partner_pb2.ReceiveTasksRequest(kinds=[7]))  # type: ignore[list-item]
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await _first_task(stream)
    assert err.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "not task kinds" in (err.value.details() or "")


async def test_no_bsn_or_contact_in_any_log_line_or_plain_column(
    flow: Flow, logs: LogCapture
) -> None:
    ggz = MemoryPartner({BSN: Record("crisisdienst@ggz-rr.example")})
    await flow.run_partner(RR, "ggz-rr", "ggz", ggz)
    answer = await refer(flow, RR, "politie-rr", "politie")
    await node(flow).parts.tasks.settle()
    case = node(flow).parts.registry.get(answer.case_ref.case_id)
    assert case.hits
    text = "\n".join(str(line) for line in logs.lines())
    assert logs.events("hit_no_hit_round")
    assert BSN not in text
    assert case.subject not in text
    with node(flow).parts.engine.connect() as conn:
        for table in sa.inspect(conn).get_table_names():
            for row in conn.execute(sa.text(f'SELECT * FROM "{table}"')):
                assert BSN not in " ".join(str(v) for v in row), table


async def test_an_answer_policy_does_not_release_is_withheld_but_audited(flow: Flow) -> None:
    """A newly signed bundle drops gemeente from hit/no-hit; its answer is then withheld."""
    ggz = MemoryPartner({BSN: Record("crisisdienst@ggz-rr.example")})
    gemeente = MemoryPartner({BSN: Record("wijkteam@gemeente-rr.example")})
    await flow.run_partner(RR, "ggz-rr", "ggz", ggz)
    gemeente_runner = await flow.run_partner(RR, "gemeente-rr", "gemeente", gemeente)
    bundle = flow.pair.keys.bundle
    text = bundle.read_text()
    narrowed = text.replace(
        "phases: [aanmelding, triage]\n    providers: *all_partners",
        "phases: [aanmelding, triage]\n    providers: [politie, ggz]",
    )
    assert narrowed != text
    bundle.write_text(narrowed)
    signing.sign_bundle(bundle, flow.pair.keys.policy_key)
    parts = node(flow).parts
    assert parts.policy is not None and parts.policy.check()
    answer = await refer(flow, RR, "politie-rr", "politie")
    await parts.tasks.settle()
    case = parts.registry.get(answer.case_ref.case_id)
    assert [h.org_id for h in case.hits] == ["ggz-rr"]
    assert gemeente_runner.stats["answered.hit_query"] == 1
    caller = flow.pair.fed.officer(RR, "procesregisseur").identity
    result = await run_round(
        parts, case, caller=caller, method=ROUND_METHOD, deadline=Deadline.after(2.0)
    )
    assert result.unanswered == {"gemeente-rr": "withheld by policy"}
    with parts.engine.connect() as conn:
        records = [decode(d) for _, _, d in iter_leaves(conn) if d is not None]
    denied = [
        r for r in records if r.name.endswith("/AnswerHit") and r.requester.endswith("/gemeente-rr")
    ]
    assert len(denied) == 2
    assert all(r.decision.outcome == common_pb2.DECISION_OUTCOME_DENY for r in denied)
