"""A lying peer: HL's node certificate tells RR what is not so, over real mTLS.

RR (on SQLite, then PostgreSQL) holds HL's link for HL's case
:data:`LINKED` about the person :data:`BSN`: politie-rr and ggz-rr take part,
the case's participants are of types politie, ggz and gemeente, in
casusoverleg, for the activity :data:`ACTIVITY`. RR also has its own case
about the person, with police and care facts and, for its own case, GGZ
consent. Every claim outside the link is refused, written to RR's audit log
with status ERROR under the person's pseudonym (so it shows in the inzage),
and releases nothing: no fact is answered, no partner is asked or given
anything, no ground is kept.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
import sqlalchemy as sa
from google.protobuf.message import Message
from schakel.v1 import (
    audit_pb2,
    case_pb2,
    case_pb2_grpc,
    common_pb2,
    federation_pb2,
    federation_pb2_grpc,
    partner_pb2,
)

from gateway.audit import query
from gateway.cases import GroundKind, Participant, Referral
from gateway.cases.active import active_case_id
from gateway.cases.tables import case_link_grounds
from gateway.tasks.store import partner_tasks
from tests.support.flow import ACTIVITY, Flow, running_flow
from tests.support.pki import HL, RR

BSN = "111222333"
OTHER_BSN = "123456782"
"""Another person, with an active case at RR too."""
LINKED = common_pb2.CaseRef(node_id=HL, case_id="a" * 32)
UNLINKED = common_pb2.CaseRef(node_id=HL, case_id="b" * 32)
ANTECEDENTEN = "justitie.antecedenten"
IN_ZORG = "zorg.in_zorg"
PURPOSE = common_pb2.Purpose(processing_activity_id=ACTIVITY)
HL_URI = f"schakel://node/{HL}"
ELSEWHERE = "zvh-utrecht"
"""A node that is not the caller, named as the provider by a forged delivery."""
PARTICIPANTS = [("politie-rr", "politie"), ("ggz-rr", "ggz")]
TYPES = ["politie", "ggz", "gemeente"]


def sections(node_id: str) -> str:
    """RR's partners (gemeente-rr takes no part in HL's case); HL needs none."""
    if node_id != RR:
        return ""
    return "".join(
        f'\n[[partners]]\nid = "{org}"\norg_type = "{kind}"\n'
        for org, kind in (("politie-rr", "politie"), ("ggz-rr", "ggz"), ("gemeente-rr", "gemeente"))
    )


def fact(category: str, **fields: object) -> common_pb2.Fact:
    out = common_pb2.Fact(category=category)
    for name, value in fields.items():
        if isinstance(value, bool):
            out.fields[name].flag = value
        elif isinstance(value, int):
            out.fields[name].number = value
        else:
            out.fields[name].text = str(value)
    return out


def pseudonym(flow: Flow, bsn: str = BSN) -> str:
    """The person's pseudonym in RR's own domain, as RR's inzage finds them."""
    return flow.pseudonym_at(RR, bsn)


def open_case_at_rr(flow: Flow, bsn: str, key: str) -> str:
    """RR's own accepted case about ``bsn``, with police and care facts and GGZ consent."""
    registry = flow.pair.nodes[RR].parts.registry
    case = registry.refer(
        Referral(
            referrer_org_id="politie-rr",
            referrer_org_type="politie",
            idempotency_key=key,
            subject=pseudonym(flow, bsn),
            activity=ACTIVITY,
            theme="complexe-casuistiek",
        )
    ).case
    politie, ggz = Participant("politie-rr", "politie", RR), Participant("ggz-rr", "ggz", RR)
    registry.start_triage(case.id)
    registry.accept(case.id, reason_code="ontvankelijk", participants=[politie, ggz])
    registry.store_fact(
        case.id, fact(ANTECEDENTEN, aantal=4, zwaarste_soort="geweld"), provider=politie
    )
    registry.store_fact(case.id, fact(IN_ZORG, in_zorg=True), provider=ggz)
    registry.record_ground(
        case.id,
        kind=GroundKind.CONSENT,
        category=IN_ZORG,
        provider_org_id="ggz-rr",
        evidence_ref="TOESTEMMING-RR-1",
    )
    return case.id


@pytest.fixture
async def flow(tmp_path: Path, db_url: str) -> AsyncIterator[Flow]:
    """RR (on ``db_url``) holding HL's link for :data:`LINKED`, and its own cases."""
    async with running_flow(tmp_path, db_url, sections) as started:
        open_case_at_rr(started, BSN, "rr-1")
        open_case_at_rr(started, OTHER_BSN, "rr-2")
        made = await started.link(RR, HL, LINKED, BSN, PARTICIPANTS, TYPES)
        assert made.changed
        yield started


def participant(org_id: str, org_type: str, node_id: str = RR) -> common_pb2.Participant:
    return common_pb2.Participant(org_id=org_id, org_type=org_type, node_id=node_id)


def facts_request(flow: Flow, **changes: Any) -> federation_pb2.FederatedFactsRequest:
    """HL asks for RR's police facts within its link, unless ``changes`` lie."""
    fields: dict[str, Any] = {
        "purpose": PURPOSE,
        "case_ref": LINKED,
        "subject": flow.subject_at(RR, BSN),
        "phase": common_pb2.PHASE_CASUSOVERLEG,
        "categories": [ANTECEDENTEN],
        "recipient_org_type": "gemeente",
    }
    return federation_pb2.FederatedFactsRequest(**(fields | changes))


def ask_request(flow: Flow, **changes: Any) -> federation_pb2.AskParticipantRequest:
    """HL asks politie-rr within its link, unless ``changes`` lie."""
    fields: dict[str, Any] = {
        "purpose": PURPOSE,
        "case_ref": LINKED,
        "subject": flow.subject_at(RR, BSN),
        "provider": participant("politie-rr", "politie"),
        "categories": [ANTECEDENTEN],
        "recipient_org_types": ["zvh", "gemeente"],
        "deadline_ms": 100,
    }
    return federation_pb2.AskParticipantRequest(**(fields | changes))


def deliver_request(flow: Flow, **changes: Any) -> federation_pb2.DeliverFactsRequest:
    """HL delivers a police summary to politie-rr within its link, unless ``changes`` lie."""
    fields: dict[str, Any] = {
        "purpose": PURPOSE,
        "case_ref": LINKED,
        "subject": flow.subject_at(RR, BSN),
        "phase": common_pb2.PHASE_CASUSOVERLEG,
        "recipient": participant("politie-rr", "politie"),
        "provider": participant("politie-hl", "politie", HL),
        "facts": [fact(ANTECEDENTEN, aantal="3-5", zwaarste_soort="vermogen")],
    }
    return federation_pb2.DeliverFactsRequest(**(fields | changes))


async def send(flow: Flow, method: str, message: Message) -> Any:
    """``message`` to RR from HL's node certificate; the answer."""
    async with flow.pair.channel(RR, flow.pair.fed.node(HL, force=True)) as channel:
        stub = federation_pb2_grpc.FederationServiceStub(channel)
        return await getattr(stub, method)(message, timeout=10)


async def refused(flow: Flow, method: str, message: Message) -> grpc.aio.AioRpcError:
    """The refusal ``message`` gets."""
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await send(flow, method, message)
    return err.value


def refusals(flow: Flow, method: str, bsn: str = BSN) -> list[audit_pb2.AuditRecord]:
    """RR's records of HL's refused ``method`` calls about ``bsn``, found as inzage finds them."""
    where = query.Filter(data_subject_id=pseudonym(flow, bsn))
    return [
        e.record
        for e in query.query(flow.pair.nodes[RR].parts.engine, where)
        if e.record.name == f"schakel.v1.FederationService/{method}"
        and e.record.status == audit_pb2.SPAN_STATUS_ERROR
        and e.record.requester == HL_URI
    ]


def count(flow: Flow, table: sa.Table) -> int:
    with flow.pair.nodes[RR].parts.engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())


Lie = tuple[str, Callable[[Flow], Message], grpc.StatusCode, str, str]
"""(method, the lying request, the status, words of the refusal, whose subject it names)."""

LIES: dict[str, Lie] = {
    "another purpose (RequestFacts)": (
        "RequestFacts",
        # Under huiselijk geweld the police may tell the regie: a lie worth telling.
        lambda f: facts_request(
            f,
            purpose=common_pb2.Purpose(processing_activity_id="zvh.huiselijk-geweld"),
            recipient_org_type="zvh",
        ),
        grpc.StatusCode.PERMISSION_DENIED,
        "is not activity 'zvh.complexe-casuistiek'",
        BSN,
    ),
    "another purpose (AskParticipant)": (
        "AskParticipant",
        lambda f: ask_request(
            f, purpose=common_pb2.Purpose(processing_activity_id="zvh.huiselijk-geweld")
        ),
        grpc.StatusCode.PERMISSION_DENIED,
        "is not activity",
        BSN,
    ),
    "another phase": (
        "RequestFacts",
        lambda f: facts_request(f, phase=common_pb2.PHASE_AANMELDING),
        grpc.StatusCode.FAILED_PRECONDITION,
        "phase aanmelding is not casusoverleg",
        BSN,
    ),
    "another phase (DeliverFacts)": (
        "DeliverFacts",
        lambda f: deliver_request(f, phase=common_pb2.PHASE_AFSCHALING),
        grpc.StatusCode.FAILED_PRECONDITION,
        "phase afschaling is not casusoverleg",
        BSN,
    ),
    "a recipient type no participant has (RequestFacts)": (
        "RequestFacts",
        lambda f: facts_request(f, recipient_org_type="reclassering"),
        grpc.StatusCode.PERMISSION_DENIED,
        "recipient type 'reclassering' is not the type of a participant",
        BSN,
    ),
    "a recipient type no participant has (AskParticipant)": (
        "AskParticipant",
        lambda f: ask_request(f, recipient_org_types=["zvh", "reclassering"]),
        grpc.StatusCode.PERMISSION_DENIED,
        "recipient type 'reclassering'",
        BSN,
    ),
    "a provider that takes no part (AskParticipant)": (
        "AskParticipant",
        lambda f: ask_request(f, provider=participant("gemeente-rr", "gemeente")),
        grpc.StatusCode.PERMISSION_DENIED,
        "provider 'gemeente-rr' does not take part",
        BSN,
    ),
    "a recipient that takes no part (DeliverFacts)": (
        "DeliverFacts",
        lambda f: deliver_request(f, recipient=participant("gemeente-rr", "gemeente")),
        grpc.StatusCode.PERMISSION_DENIED,
        "recipient 'gemeente-rr' does not take part",
        BSN,
    ),
    "a forged zvh provider (DeliverFacts)": (
        "DeliverFacts",
        lambda f: deliver_request(f, provider=participant(ELSEWHERE, "zvh", ELSEWHERE)),
        grpc.StatusCode.PERMISSION_DENIED,
        "is not the calling node",
        BSN,
    ),
    "a provider of this node that takes no part (DeliverFacts)": (
        "DeliverFacts",
        lambda f: deliver_request(f, provider=participant("gemeente-rr", "gemeente")),
        grpc.StatusCode.PERMISSION_DENIED,
        "provider 'gemeente-rr' does not take part",
        BSN,
    ),
    "another person in the linked case": (
        "RequestFacts",
        lambda f: facts_request(f, subject=f.subject_at(RR, OTHER_BSN)),
        grpc.StatusCode.PERMISSION_DENIED,
        "the subject is not the subject of linked case",
        OTHER_BSN,
    ),
    "a case with no link (RequestFacts)": (
        "RequestFacts",
        lambda f: facts_request(f, case_ref=UNLINKED),
        grpc.StatusCode.PERMISSION_DENIED,
        "holds no link for case " + "b" * 32,
        BSN,
    ),
    "a case with no link (AskParticipant)": (
        "AskParticipant",
        lambda f: ask_request(
            f,
            case_ref=UNLINKED,
            grounds=[federation_pb2.FederatedGround(category=IN_ZORG, kind="consent")],
        ),
        grpc.StatusCode.PERMISSION_DENIED,
        "holds no link",
        BSN,
    ),
    "a case with no link (DeliverFacts)": (
        "DeliverFacts",
        lambda f: deliver_request(f, case_ref=UNLINKED),
        grpc.StatusCode.PERMISSION_DENIED,
        "holds no link",
        BSN,
    ),
    "a ground of RR's own case (care facts through RequestFacts)": (
        "RequestFacts",
        lambda f: facts_request(f, categories=[IN_ZORG]),
        grpc.StatusCode.PERMISSION_DENIED,
        "'zorg.in_zorg' is special (art. 9)",
        BSN,
    ),
}


async def test_within_its_link_the_peer_is_answered(flow: Flow) -> None:
    """The control: the honest request of every lie below is answered."""
    answer = await send(flow, "RequestFacts", facts_request(flow))
    assert [f.category for f in answer.facts] == [ANTECEDENTEN]
    assert answer.facts[0].fields["aantal"].text == "3-5", "minimised"
    delivered = await send(flow, "DeliverFacts", deliver_request(flow))
    assert list(delivered.delivered) == [ANTECEDENTEN]
    asked = await send(flow, "AskParticipant", ask_request(flow))
    assert not asked.answered, "politie-rr runs no adapter here, so it could not answer in time"
    assert count(flow, partner_tasks) == 2, "one question, one delivery"


async def test_every_claim_outside_the_link_is_refused_audited_and_releases_nothing(
    flow: Flow,
) -> None:
    answers = {}
    for what, (method, lie, _code, words, bsn) in LIES.items():
        before = len(refusals(flow, method, bsn))
        err = await refused(flow, method, lie(flow))
        answers[what] = (
            err.code(),
            words in (err.details() or ""),
            len(refusals(flow, method, bsn)) - before,
        )
    assert answers == {what: (code, True, 1) for what, (_m, _l, code, _w, _b) in LIES.items()}
    assert count(flow, partner_tasks) == 0, "no partner was asked or given anything"
    assert count(flow, case_link_grounds) == 0, "no ground was kept"
    # The forged provider is not named in RR's audit log, not even in the refusal.
    assert all(ELSEWHERE not in r.provider for r in refusals(flow, "DeliverFacts"))


async def test_a_closed_link_gives_nothing_and_stays_closed(flow: Flow) -> None:
    closed = await flow.link(
        RR, HL, LINKED, BSN, PARTICIPANTS, TYPES, phase=common_pb2.PHASE_AFSCHALING
    )
    assert closed.changed
    reopened = await flow.link(RR, HL, LINKED, BSN, PARTICIPANTS, TYPES)
    assert not reopened.changed, "a late update does not reopen a closed link"
    closes = {
        "RequestFacts": facts_request(flow),
        "AskParticipant": ask_request(flow),
        "DeliverFacts": deliver_request(flow),
    }
    answers = {}
    for method, message in closes.items():
        err = await refused(flow, method, message)
        answers[method] = (err.code(), "is closed" in (err.details() or ""))
        assert refusals(flow, method), method
    assert answers == {m: (grpc.StatusCode.FAILED_PRECONDITION, True) for m in closes}
    assert count(flow, partner_tasks) == 0
    # The closed link still takes the outcome from the case node itself.
    outcome = fact("uitkomst", uitkomst="doelen-bereikt")
    told = await send(
        flow,
        "DeliverFacts",
        deliver_request(
            flow,
            phase=common_pb2.PHASE_AFSCHALING,
            provider=participant(HL, "zvh", HL),
            facts=[outcome],
        ),
    )
    assert list(told.delivered) == ["uitkomst"]


async def test_a_peer_cannot_remake_or_stretch_a_link(flow: Flow) -> None:
    lies = {
        "another person": (
            lambda: flow.link(RR, HL, LINKED, OTHER_BSN, PARTICIPANTS, TYPES),
            grpc.StatusCode.ALREADY_EXISTS,
        ),
        "another activity": (
            lambda: flow.link(
                RR, HL, LINKED, BSN, PARTICIPANTS, TYPES, activity="zvh.huiselijk-geweld"
            ),
            grpc.StatusCode.ALREADY_EXISTS,
        ),
        "another type for a participant": (
            lambda: flow.link(RR, HL, LINKED, BSN, [("ggz-rr", "gemeente")], TYPES),
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
        "an organisation that is no partner here": (
            lambda: flow.link(RR, HL, LINKED, BSN, [("woonstad", "woningcorporatie")], TYPES),
            grpc.StatusCode.NOT_FOUND,
        ),
        "closing a link never made": (
            lambda: flow.link(
                RR, HL, UNLINKED, BSN, PARTICIPANTS, TYPES, phase=common_pb2.PHASE_AFSCHALING
            ),
            grpc.StatusCode.FAILED_PRECONDITION,
        ),
    }
    answers = {}
    for what, (make, _code) in lies.items():
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await make()
        answers[what] = err.value.code()
    assert answers == {what: code for what, (_make, code) in lies.items()}
    assert len(refusals(flow, "LinkCase", BSN)) == 4
    assert len(refusals(flow, "LinkCase", OTHER_BSN)) == 1
    link = flow.pair.nodes[RR].parts.links.get(HL, LINKED.case_id)
    assert link is not None and link.is_open and link.subject == pseudonym(flow)
    # And a node links only its own cases.
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await flow.link(RR, HL, common_pb2.CaseRef(node_id=RR, case_id="c" * 32), BSN, [], TYPES)
    assert err.value.code() is grpc.StatusCode.INVALID_ARGUMENT


@contextlib.asynccontextmanager
async def ggz_rr_answering(flow: Flow) -> AsyncIterator[list[partner_pb2.PartnerTask]]:
    """ggz-rr reads its task stream and answers each fact question with its care fact."""
    seen: list[partner_pb2.PartnerTask] = []
    client = flow.client(RR, "ggz-rr", "ggz")

    async def serve() -> None:
        async for task in client.receive_tasks():
            seen.append(task)
            if task.kind == partner_pb2.TASK_KIND_FACT_QUERY:
                await client.answer_facts(task, [fact(IN_ZORG, in_zorg=True)])

    job = asyncio.create_task(serve())
    broker = flow.pair.nodes[RR].parts.tasks
    for _ in range(200):
        if broker.streams("ggz-rr"):
            break
        await asyncio.sleep(0.01)
    try:
        yield seen
    finally:
        job.cancel()
        with contextlib.suppress(BaseException):
            await job
        await client.close()


async def test_a_stated_ground_is_the_peers_assertion_bound_to_its_link_and_provider(
    flow: Flow,
) -> None:
    asked = ask_request(
        flow,
        provider=participant("ggz-rr", "ggz"),
        categories=[IN_ZORG],
        recipient_org_types=["zvh", "gemeente"],
        grounds=[federation_pb2.FederatedGround(category=IN_ZORG, kind="consent")],
        deadline_ms=5000,
    )
    async with ggz_rr_answering(flow) as seen:
        answer = await send(flow, "AskParticipant", asked)
        # HL's second case about the same person, with ggz-rr too, states no ground: the
        # consent HL asserted for its first case and RR's own consent do not count there.
        await flow.link(RR, HL, UNLINKED, BSN, [("ggz-rr", "ggz")], ["ggz", "gemeente"])
        unground = await send(
            flow, "AskParticipant", ask_request(flow, **{**_fields(asked), "case_ref": UNLINKED})
        )
    assert answer.answered
    released = {r.recipient_org_type: [f.category for f in r.facts] for r in answer.releases}
    assert released["gemeente"] == [IN_ZORG]
    # ggz-rr saw the ground in its question, named as HL's.
    (question,) = [t for t in seen if t.kind == partner_pb2.TASK_KIND_FACT_QUERY]
    assert [(g.category, g.kind, g.node_id) for g in question.asserted_grounds] == [
        (IN_ZORG, "consent", HL)
    ]
    assert not unground.answered
    withheld = {
        r.recipient_org_type: {w.category: w.reason for w in r.decision.withheld}
        for r in unground.releases
    }
    assert withheld["gemeente"] == {IN_ZORG: "art9-no-ground"}
    # The assertion is on record, with HL as requester and ggz-rr as provider.
    where = query.Filter(data_subject_id=pseudonym(flow))
    (assertion,) = [
        e.record
        for e in query.query(flow.pair.nodes[RR].parts.engine, where)
        if e.record.name.endswith("/AskParticipant/asserted-grounds")
    ]
    assert assertion.requester == HL_URI
    assert assertion.provider == f"schakel://partner/{RR}/ggz-rr"
    assert list(assertion.categories_asked) == [IN_ZORG]
    assert assertion.decision.legal_basis.code == "toestemming"
    assert assertion.case_ref.case_id == LINKED.case_id


def _fields(message: Message) -> dict[str, Any]:
    """The set fields of ``message`` as constructor arguments, grounds left out."""
    return {f.name: v for f, v in message.ListFields() if f.name != "grounds"}


async def test_a_ground_of_rrs_own_case_is_shown_to_its_provider_as_rrs(flow: Flow) -> None:
    """RR's own uitvraag: the consent its procesregisseur recorded is in ggz-rr's question,
    named as RR's."""
    own = active_case_id(flow.pair.nodes[RR].parts.engine, pseudonym(flow))
    assert own is not None
    regie = flow.pair.fed.officer(RR, "procesregisseur")
    async with ggz_rr_answering(flow) as seen, flow.pair.channel(RR, regie) as channel:
        result = await case_pb2_grpc.CaseServiceStub(channel).StartUitvraag(
            case_pb2.StartUitvraagRequest(
                purpose=PURPOSE,
                case_ref=common_pb2.CaseRef(node_id=RR, case_id=own),
                categories=[IN_ZORG],
            ),
            timeout=15,
        )
    (ggz,) = [p for p in result.providers if p.provider.org_id == "ggz-rr"]
    assert ggz.answered
    (question,) = [t for t in seen if t.kind == partner_pb2.TASK_KIND_FACT_QUERY]
    assert [(g.category, g.kind, g.node_id) for g in question.asserted_grounds] == [
        (IN_ZORG, "consent", RR)
    ]
