"""The regie's case flow over mTLS: triage, uitvraag under policy, grounds, closure, purge.

Partner systems are simulated by :class:`MemoryPartner` adapters that hold
their own records and are served by the real runner; the procesregisseur
calls CaseService with an officer certificate.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from datetime import UTC, datetime, timedelta

import grpc
import pytest
import sqlalchemy as sa
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
from gateway.cases.tables import case_facts
from gateway.flows.uitvraag_plan import kept_days
from policy.compiler import compile_bundle
from policy.evaluator import Evaluator, Request
from policy.loader import load_bundle
from policy.vocabulary import PROCESREGISSEUR, REGIE, Phase
from tests.support.caseflow import (
    ANTECEDENTEN,
    HUISVESTING,
    IN_ZORG,
    PARTICIPANTS,
    accept,
    categories_of,
    deliveries,
    fact,
    node,
    open_case,
    partners,
    regie,
    start_partners,
)
from tests.support.flow import Flow, MemoryPartner
from tests.support.pki import RR, LogCapture
from tests.support.policy import BASELINE
from tests.support.referrals import BSN, PURPOSE


async def until_delivered(sim: MemoryPartner, phase: int, timeout: float = 5.0) -> None:
    """Wait until ``sim`` has a delivery of ``phase`` (fails the test at the timeout)."""
    for _ in range(int(timeout / 0.02)):
        if any(task.phase == phase for _, task in sim.delivered):
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"no delivery of phase {phase} within {timeout} s")


async def test_uitvraag_releases_per_recipient_minimised_and_art9_only_after_consent(
    flow: Flow,
) -> None:
    sims = await start_partners(flow)
    ref = await open_case(flow)
    async with regie(flow) as channel:
        stub = case_pb2_grpc.CaseServiceStub(channel)
        await accept(stub, ref)
        result = await stub.StartUitvraag(
            case_pb2.StartUitvraagRequest(
                purpose=PURPOSE,
                case_ref=ref,
                categories=[ANTECEDENTEN, IN_ZORG, HUISVESTING],
                deadline_ms=3000,
            )
        )
        assert {p.provider.org_id: p.answered for p in result.providers} == {
            "politie-rr": True,
            "ggz-rr": False,  # art. 9 without a ground: nothing to ask
            "gemeente-rr": True,
        }
        await deliveries(sims["ggz-rr"], 2)
        await deliveries(sims["gemeente-rr"], 1)
        # Politie's record summary reaches ggz and gemeente (case table), banded and coarsened.
        assert categories_of(sims["ggz-rr"]) == {ANTECEDENTEN, HUISVESTING}
        assert categories_of(sims["gemeente-rr"]) == {ANTECEDENTEN}
        # Politie is not among the recipients of social or care data.
        assert categories_of(sims["politie-rr"]) == set()
        ((bsn, task),) = [d for d in sims["gemeente-rr"].delivered]
        assert bsn == BSN  # the subject arrived in gemeente's own domain
        (released,) = task.facts
        assert released.fields["aantal"].text == "3-5"
        assert released.fields["laatste_datum"].date == common_pb2.Date(year=2025)
        assert task.decision.bundle_hash
        assert list(task.decision.rule_ids) == ["cc-politie-antecedenten"]
        # An organisation outside the case gets nothing.
        assert sims["woonstad"].delivered == []
        assert sims["woonstad"].asked == []

        stored = node(flow).parts.registry.facts(ref.case_id)
        assert {s.category for s in stored} == {ANTECEDENTEN, HUISVESTING}

        await stub.RecordGround(
            case_pb2.RecordGroundRequest(
                purpose=PURPOSE,
                case_ref=ref,
                kind=case_pb2.GROUND_KIND_CONSENT,
                category=IN_ZORG,
                provider_org_id="ggz-rr",
                evidence_ref="TOESTEMMING-2026-17",
            )
        )
        again = await stub.StartUitvraag(
            case_pb2.StartUitvraagRequest(
                purpose=PURPOSE, case_ref=ref, categories=[IN_ZORG], deadline_ms=3000
            )
        )
        assert {p.provider.org_id: p.answered for p in again.providers}["ggz-rr"]
        await deliveries(sims["gemeente-rr"], 2)
        assert categories_of(sims["gemeente-rr"]) == {ANTECEDENTEN, IN_ZORG}
        zorg = [
            f for _, t in sims["gemeente-rr"].delivered for f in t.facts if f.category == IN_ZORG
        ]
        # Minimised under the rule: "sinds" coarsened to the year.
        assert set(zorg[0].fields) == {"in_zorg", "zorgsoort", "sinds"}
        assert zorg[0].fields["sinds"].date == common_pb2.Date(year=2024)
        assert categories_of(sims["politie-rr"]) == set()
        assert sims["woonstad"].delivered == []

    with node(flow).parts.engine.connect() as conn:
        records = [decode(data) for _, _, data in iter_leaves(conn) if data is not None]
    releases = [
        r
        for r in records
        if r.name == "schakel.v1.CaseService/StartUitvraag" and r.HasField("decision")
    ]
    # First round: politie -> ggz, gemeente; gemeente -> politie, ggz. Second: ggz -> 2 others.
    assert len(releases) == 6
    assert all(
        r.data_subject_id == node(flow).parts.registry.get(ref.case_id).subject for r in releases
    )


async def test_close_delivers_only_the_outcome_and_the_purge_leaves_no_fact_or_link(
    flow: Flow, logs: LogCapture
) -> None:
    sims = await start_partners(flow)
    ref = await open_case(flow)
    async with regie(flow) as channel:
        stub = case_pb2_grpc.CaseServiceStub(channel)
        await accept(stub, ref)
        await stub.StartUitvraag(
            case_pb2.StartUitvraagRequest(
                purpose=PURPOSE, case_ref=ref, categories=[ANTECEDENTEN], deadline_ms=3000
            )
        )
        await deliveries(sims["gemeente-rr"], 1)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.CloseCase(
                case_pb2.CloseCaseRequest(purpose=PURPOSE, case_ref=ref, outcome="klaar")
            )
        assert err.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert "doelen-bereikt" in (err.value.details() or "")
        status = await stub.CloseCase(
            case_pb2.CloseCaseRequest(purpose=PURPOSE, case_ref=ref, outcome="doelen-bereikt")
        )
        assert status.phase == common_pb2.PHASE_AFSCHALING
    for org_id, _ in PARTICIPANTS:
        await until_delivered(sims[org_id], common_pb2.PHASE_AFSCHALING)
        outcome = [t for _, t in sims[org_id].delivered if t.phase == common_pb2.PHASE_AFSCHALING]
        assert len(outcome) == 1, org_id
        (only,) = outcome[0].facts
        assert only.category == "uitkomst"
        assert dict(only.fields) == {"uitkomst": common_pb2.FactValue(text="doelen-bereikt")}
    assert sims["woonstad"].delivered == []

    registry = node(flow).parts.registry
    assert registry.facts(ref.case_id)
    subject = registry.get(ref.case_id).subject
    later = datetime.now(UTC) + timedelta(days=800)
    purged = registry.purge_expired(now=later)
    assert ref.case_id in purged
    # The node's retention run also deletes partner tasks past their deadline.
    await node(flow).parts.tasks.purge_expired(now=later)
    case = registry.get(ref.case_id)
    assert case.subject == "" and case.hits == () and case.participants == ()
    assert registry.facts(ref.case_id) == []
    with node(flow).parts.engine.connect() as conn:
        for table in sa.inspect(conn).get_table_names():
            if table.startswith("audit"):
                continue  # audit bodies follow their own retention
            for row in conn.execute(sa.text(f'SELECT * FROM "{table}"')):
                text = " ".join(str(v) for v in row)
                assert subject not in text, table
                assert BSN not in text, table
    text = "\n".join(str(line) for line in logs.lines())
    assert BSN not in text and subject not in text
    assert "dakloos" not in text and "geweld" not in text


async def test_triage_reject_and_refusals_say_what_is_wrong(flow: Flow) -> None:
    ref = await open_case(flow)
    audit = node(flow).parts.audit
    async with regie(flow) as channel:
        stub = case_pb2_grpc.CaseServiceStub(channel)
        await stub.StartTriage(case_pb2.StartTriageRequest(purpose=PURPOSE, case_ref=ref))
        before = audit.head().size
        bad: list[tuple[Awaitable[object], grpc.StatusCode, str]] = [
            (
                stub.Triage(
                    case_pb2.TriageRequest(
                        purpose=common_pb2.Purpose(processing_activity_id="zvh.huiselijk-geweld"),
                        case_ref=ref,
                    )
                ),
                grpc.StatusCode.PERMISSION_DENIED,
                "case's activity",
            ),
            (
                stub.StartUitvraag(
                    case_pb2.StartUitvraagRequest(
                        purpose=PURPOSE, case_ref=ref, categories=[ANTECEDENTEN]
                    )
                ),
                grpc.StatusCode.FAILED_PRECONDITION,
                "needs casusoverleg",
            ),
            (
                stub.StartUitvraag(
                    case_pb2.StartUitvraagRequest(purpose=PURPOSE, case_ref=ref, categories=["x.y"])
                ),
                grpc.StatusCode.INVALID_ARGUMENT,
                "unknown",
            ),
            (
                stub.Triage(
                    case_pb2.TriageRequest(
                        purpose=PURPOSE,
                        case_ref=common_pb2.CaseRef(node_id="zvh-elders", case_id=ref.case_id),
                    )
                ),
                grpc.StatusCode.INVALID_ARGUMENT,
                "own cases",
            ),
        ]
        for call, code, words in bad:
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await call
            assert err.value.code() is code
            assert words in (err.value.details() or "")
        # Each refusal is on record (status ERROR), and nothing else is.
        assert audit.head().size == before + len(bad)
        status = await stub.Triage(
            case_pb2.TriageRequest(purpose=PURPOSE, case_ref=ref, accept=False)
        )
        assert status.phase == common_pb2.PHASE_AFSCHALING
        assert status.outcome == "niet-ontvankelijk"
        assert audit.head().size == before + len(bad) + 1
        for again in (
            stub.StartTriage(case_pb2.StartTriageRequest(purpose=PURPOSE, case_ref=ref)),
            stub.Triage(case_pb2.TriageRequest(purpose=PURPOSE, case_ref=ref, accept=False)),
        ):
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await again
            assert err.value.code() is grpc.StatusCode.FAILED_PRECONDITION
    case = node(flow).parts.registry.get(ref.case_id)
    assert case.phase is Phase.AFSCHALING
    assert case.retain_until is not None


async def test_run_hit_no_hit_through_case_service(flow: Flow) -> None:
    sims = await start_partners(flow)
    ref = await open_case(flow)
    async with regie(flow) as channel:
        result = await case_pb2_grpc.CaseServiceStub(channel).RunHitNoHit(
            case_pb2.RunHitNoHitRequest(purpose=PURPOSE, case_ref=ref, deadline_ms=2000)
        )
    assert {h.org_id for h in result.hits} == {"ggz-rr", "gemeente-rr"}
    assert list(result.unanswered) == []
    assert sims["ggz-rr"].delivered == []


async def test_a_partner_cannot_call_the_case_service(flow: Flow) -> None:
    ref = await open_case(flow)
    cred = flow.pair.fed.partner(RR, "politie-rr", "politie", force=True)
    async with flow.pair.channel(RR, cred) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await case_pb2_grpc.CaseServiceStub(channel).CloseCase(
                case_pb2.CloseCaseRequest(purpose=PURPOSE, case_ref=ref, outcome="doelen-bereikt")
            )
    assert err.value.code() is grpc.StatusCode.PERMISSION_DENIED


def politie_answers(flow: Flow, status: int = audit_pb2.SPAN_STATUS_OK) -> int:
    with node(flow).parts.engine.connect() as conn:
        records = [decode(d) for _, _, d in iter_leaves(conn) if d is not None]
    return sum(
        r.name.endswith("/AnswerFacts")
        and r.requester.endswith("/politie-rr")
        and r.status == status
        for r in records
    )


async def test_answer_facts_refuses_categories_not_asked_and_changes_nothing(flow: Flow) -> None:
    sims = partners()
    for org_id, org_type in PARTICIPANTS[1:]:
        await flow.run_partner(RR, org_id, org_type, sims[org_id])
    ref = await open_case(flow)
    cred = flow.pair.fed.partner(RR, "politie-rr", "politie", force=True)
    async with regie(flow) as channel, flow.pair.channel(RR, cred) as politie_channel:
        stub = case_pb2_grpc.CaseServiceStub(channel)
        await accept(stub, ref)
        politie = partner_pb2_grpc.PartnerServiceStub(politie_channel)
        stream = politie.ReceiveTasks(
            partner_pb2.ReceiveTasksRequest(kinds=[partner_pb2.TASK_KIND_FACT_QUERY])
        )
        broker = node(flow).parts.tasks
        for _ in range(200):
            if broker.streams("politie-rr"):
                break
            await asyncio.sleep(0.01)
        uitvraag = asyncio.ensure_future(
            stub.StartUitvraag(
                case_pb2.StartUitvraagRequest(
                    purpose=PURPOSE,
                    case_ref=ref,
                    categories=[ANTECEDENTEN, HUISVESTING],
                    deadline_ms=5000,
                )
            )
        )
        task = await asyncio.wait_for(anext(aiter(stream)), 5)
        assert list(task.categories) == [ANTECEDENTEN]  # only what politie may release
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await politie.AnswerFacts(
                partner_pb2.AnswerFactsRequest(
                    task_id=task.task_id,
                    purpose=PURPOSE,
                    case_ref=ref,
                    facts=[fact(HUISVESTING, status="dakloos")],
                )
            )
        assert err.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert "not asked for: 'sociaal.huisvesting'" in (err.value.details() or "")
        # Other providers answer meanwhile; politie's refused answer is recorded as refused only.
        assert politie_answers(flow) == 0
        assert politie_answers(flow, audit_pb2.SPAN_STATUS_ERROR) == 1
        await politie.AnswerFacts(
            partner_pb2.AnswerFactsRequest(
                task_id=task.task_id,
                purpose=PURPOSE,
                case_ref=ref,
                facts=[fact(ANTECEDENTEN, aantal=1, zwaarste_soort="vermogen")],
            )
        )
        result = await uitvraag
        stream.cancel()
    assert politie_answers(flow) == 1
    assert {p.provider.org_id: p.answered for p in result.providers}["politie-rr"]
    await deliveries(sims["gemeente-rr"], 1)
    ((_, delivered),) = [
        (b, t) for b, t in sims["gemeente-rr"].delivered if t.facts[0].category == ANTECEDENTEN
    ]
    assert delivered.facts[0].fields["aantal"].text == "1-2"


async def test_the_vault_keeps_the_regies_minimised_facts_not_the_raw_answer(flow: Flow) -> None:
    """Nothing at rest that the procesregisseur may not receive."""
    sims = await start_partners(flow)
    (raw_police,) = next(iter(sims["politie-rr"].records.values())).facts
    assert raw_police.fields["aantal"].number == 4  # what politie-rr answers with
    ref = await open_case(flow)
    async with regie(flow) as channel:
        stub = case_pb2_grpc.CaseServiceStub(channel)
        await accept(stub, ref)
        await stub.StartUitvraag(
            case_pb2.StartUitvraagRequest(
                purpose=PURPOSE, case_ref=ref, categories=[ANTECEDENTEN, HUISVESTING]
            )
        )
    await deliveries(sims["ggz-rr"], 2)
    stored = {s.category: s.fact for s in node(flow).parts.registry.facts(ref.case_id)}
    assert set(stored) == {ANTECEDENTEN, HUISVESTING}
    # Banded, coarsened, and only the fields the regie's rule keeps.
    assert dict(stored[ANTECEDENTEN].fields) == {
        "aantal": common_pb2.FactValue(text="3-5"),
        "zwaarste_soort": common_pb2.FactValue(text="geweld"),
        "laatste_datum": common_pb2.FactValue(date=common_pb2.Date(year=2025)),
        "contact": common_pb2.FactValue(text="wijkagent@politie-rr.example"),
    }
    # gemeente-rr answered a rent arrear the regie's rule does not keep.
    assert dict(stored[HUISVESTING].fields) == {"status": common_pb2.FactValue(text="dakloos")}
    with node(flow).parts.engine.connect() as conn:
        days = conn.execute(sa.select(case_facts.c.retention_days)).scalars().all()
    assert days == [None, None], "complexe casuistiek: the activity's retention"


def test_a_fact_is_kept_as_long_as_the_rule_that_gave_it_to_the_regie_says() -> None:
    evaluator = Evaluator(compile_bundle(load_bundle(BASELINE)))

    def days(activity: str) -> int | None:
        decision = evaluator.decide(
            Request(
                activity,
                "casusoverleg",
                "dji",
                REGIE,
                ("detentie",),
                roles=frozenset({PROCESREGISSEUR}),
                case_accepted=True,
            )
        )
        return kept_days(decision, "detentie")

    # Release planning needs the exact date, so the nazorg rule keeps it one year only.
    assert days("zvh.nazorg-ex-gedetineerden") == 365
    assert days("zvh.complexe-casuistiek") is None
