"""Overdracht over mTLS: the procesregisseur of RR hands a case over to HL."""

from __future__ import annotations

import grpc
import pytest
import sqlalchemy as sa
from schakel.v1 import audit_pb2, case_pb2, case_pb2_grpc, common_pb2

from gateway.app import Node
from gateway.audit.records import decode
from gateway.audit.store import iter_leaves
from gateway.cases import Participant, Referral
from gateway.cases.tables import cases
from gateway.flows.overdracht import METHOD, OUTCOME
from policy.vocabulary import Phase
from tests.support.pair import Pair
from tests.support.partnerflow import BSN, audit_size, call_error, expected_pseudonym
from tests.support.pki import (
    HL,
    RR,
    Credential,
    LogCapture,
    logs,  # noqa: F401 - the fixture, for these tests too
)

PURPOSE = "zvh.complexe-casuistiek"
TAGS = ("huisvesting", "schulden")


def open_case(pair: Pair, key: str = "ref-1", activity: str = PURPOSE) -> str:
    """A case at RR about the test BSN, accepted with a local participant and tagged."""
    registry = pair.nodes[RR].parts.registry
    case_id = registry.refer(
        Referral(
            referrer_org_id="politie-rr",
            referrer_org_type="politie",
            idempotency_key=key,
            subject=expected_pseudonym(pair, RR),
            activity=activity,
            theme="complexe-casuistiek",
        )
    ).case.id
    registry.start_triage(case_id)
    registry.accept(
        case_id, reason_code="ontvankelijk", participants=[Participant("politie-rr", "politie", RR)]
    )
    registry.set_bottlenecks(case_id, TAGS)
    return case_id


def request(
    case_id: str,
    key: str = "move-1",
    target: str = HL,
    activity: str = PURPOSE,
) -> case_pb2.HandOverCaseRequest:
    return case_pb2.HandOverCaseRequest(
        purpose=common_pb2.Purpose(processing_activity_id=activity),
        case_ref=common_pb2.CaseRef(node_id=RR, case_id=case_id),
        target_node_id=target,
        idempotency_key=key,
        reason_code="betrokkene-verhuisd",
    )


def regie(pair: Pair) -> Credential:
    """The procesregisseur of RR (issue once per test: the key file is not overwritten)."""
    return pair.fed.officer(RR, "procesregisseur")


async def hand_over(
    pair: Pair, req: case_pb2.HandOverCaseRequest, cred: Credential
) -> case_pb2.HandOverResult:
    async with pair.channel(RR, cred) as channel:
        stub = case_pb2_grpc.CaseServiceStub(channel)
        return await stub.HandOverCase(req, timeout=10)


def records(node: Node) -> list[audit_pb2.AuditRecord]:
    """The hand-over records in ``node``'s audit log, oldest first."""
    with node.parts.engine.connect() as conn:
        found = [decode(d) for _, _, d in iter_leaves(conn) if d is not None]
    return [r for r in found if r.name == METHOD]


def outcomes_told(node: Node) -> int:
    """Audited outcome deliveries to participants (one per participant per closure)."""
    with node.parts.engine.connect() as conn:
        found = [decode(d) for _, _, d in iter_leaves(conn) if d is not None]
    return sum(
        r.name.endswith("/CloseCase")
        and list(r.categories_asked) == ["uitkomst"]
        and r.status == audit_pb2.SPAN_STATUS_OK
        for r in found
    )


def refused_on_record(pair: Pair, before: int) -> None:
    """Since ``before`` RR's log gained one record: the refusal, in the person's inzage."""
    with pair.nodes[RR].parts.engine.connect() as conn:
        added = [decode(d) for _, _, d in iter_leaves(conn, before) if d is not None]
    assert [r.status for r in added] == [audit_pb2.SPAN_STATUS_ERROR]
    assert added[0].data_subject_id == expected_pseudonym(pair, RR)


def cases_about(node: Node, pseudonym: str) -> int:
    with node.parts.engine.connect() as conn:
        query = sa.select(sa.func.count()).where(cases.c.subject_pseudonym == pseudonym)
        return int(conn.execute(query).scalar_one())


async def test_hand_over_opens_the_case_at_the_peer_and_closes_it_here(pair: Pair) -> None:
    officer = regie(pair)
    rr, hl = pair.nodes[RR], pair.nodes[HL]
    case_id = open_case(pair)
    result = await hand_over(pair, request(case_id), officer)

    assert result.created
    assert result.remote_case_ref.node_id == HL
    remote = hl.parts.registry.get(result.remote_case_ref.case_id)
    assert remote.phase is Phase.AANMELDING, "the receiving ZVH runs its own triage"
    assert remote.subject == expected_pseudonym(pair, HL), "the same person in HL's own domain"
    assert remote.bottlenecks == TAGS
    assert remote.theme == "complexe-casuistiek" and remote.activity == PURPOSE
    assert remote.referrer_org_id == RR and remote.external_ref == f"{RR}/{case_id}"

    local = rr.parts.registry.get(case_id)
    assert local.phase is Phase.AFSCHALING and local.outcome == OUTCOME
    assert local.retain_until is not None
    assert result.status.phase == common_pb2.PHASE_AFSCHALING
    assert result.status.outcome == OUTCOME
    transfer = rr.parts.registry.transfer_of(case_id)
    assert transfer is not None
    assert (transfer.node_id, transfer.remote_case_id) == (HL, result.remote_case_ref.case_id)
    assert transfer.reason_code == "betrokkene-verhuisd"
    assert outcomes_told(rr) == 1, "the local participant is told the outcome"

    release, done = records(rr)
    for record in (release, done):
        assert record.status == audit_pb2.SPAN_STATUS_OK
        assert record.data_subject_id == expected_pseudonym(pair, RR)
        assert record.requester == f"schakel://node/{HL}"
        assert record.provider == f"schakel://officer/{RR}/procesregisseur"
        assert list(record.categories_asked) == ["overdracht"]
        assert list(record.decision.rule_ids) == ["overdracht-zvh"]
    assert release.case_ref == common_pb2.CaseRef(node_id=RR, case_id=case_id)
    assert done.case_ref == result.remote_case_ref, "the FG can follow the case to HL"


async def test_a_retry_returns_the_same_remote_case_and_closes_nothing_twice(pair: Pair) -> None:
    officer = regie(pair)
    rr, hl = pair.nodes[RR], pair.nodes[HL]
    case_id = open_case(pair)
    first = await hand_over(pair, request(case_id), officer)
    closed = rr.parts.registry.get(case_id)
    again = await hand_over(pair, request(case_id), officer)
    assert not again.created
    assert again.remote_case_ref == first.remote_case_ref
    assert again.status == first.status
    assert rr.parts.registry.get(case_id) == closed, "closed once: same closing time"
    assert outcomes_told(rr) == 1, "the participant is not told twice"
    assert cases_about(hl, expected_pseudonym(pair, HL)) == 1
    assert [r.case_ref for r in records(rr)][-1] == first.remote_case_ref

    other_key = await call_error(hand_over(pair, request(case_id, key="move-2"), officer))
    assert other_key.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert f"handed over to node {HL!r}" in (other_key.details() or "")
    assert cases_about(hl, expected_pseudonym(pair, HL)) == 1


@pytest.mark.parametrize("who", ["partner", "fg", "other-node-officer"])
async def test_only_this_nodes_procesregisseur_may_hand_over(pair: Pair, who: str) -> None:
    cred = {
        "partner": lambda: pair.fed.partner(RR, "politie-rr", "politie"),
        "fg": lambda: pair.fed.officer(RR, "fg"),
        "other-node-officer": lambda: pair.fed.officer(HL, "procesregisseur"),
    }[who]()
    case_id = open_case(pair)
    before = audit_size(pair)
    err = await call_error(hand_over(pair, request(case_id), cred))
    assert err.code() is grpc.StatusCode.PERMISSION_DENIED
    assert pair.nodes[RR].parts.registry.get(case_id).phase is Phase.CASUSOVERLEG
    assert audit_size(pair) == before


async def test_a_closed_case_is_not_handed_over(pair: Pair) -> None:
    officer = regie(pair)
    rr = pair.nodes[RR]
    case_id = open_case(pair)
    rr.parts.registry.close(case_id, outcome="doelen-bereikt", retention_days=30)
    before = audit_size(pair)
    err = await call_error(hand_over(pair, request(case_id), officer))
    assert err.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert "afschaling" in (err.details() or "") and "only an open case" in (err.details() or "")
    assert rr.parts.registry.get(case_id).outcome == "doelen-bereikt"
    assert rr.parts.registry.transfer_of(case_id) is None
    refused_on_record(pair, before)
    assert cases_about(pair.nodes[HL], expected_pseudonym(pair, HL)) == 0


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"target": "zvh-nergens"}, "is not a peer node of this node; known: zvh-haaglanden"),
        ({"target": RR}, "is this node"),
        ({"target": ""}, "target_node_id is required"),
        ({"key": ""}, "idempotency_key must be"),
        ({"key": "x" * 65}, "idempotency_key must be"),
    ],
)
async def test_bad_requests_are_refused_and_change_nothing(
    pair: Pair, changes: dict[str, str], message: str
) -> None:
    officer = regie(pair)
    case_id = open_case(pair)
    before = audit_size(pair)
    err = await call_error(hand_over(pair, request(case_id, **changes), officer))
    assert err.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert message in (err.details() or "")
    assert pair.nodes[RR].parts.registry.get(case_id).phase is Phase.CASUSOVERLEG
    refused_on_record(pair, before)


async def test_a_missing_reason_code_is_refused(pair: Pair) -> None:
    officer = regie(pair)
    case_id = open_case(pair)
    req = request(case_id)
    req.reason_code = ""
    err = await call_error(hand_over(pair, req, officer))
    assert err.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "reason_code" in (err.details() or "")


async def test_policy_refusal_is_audited_and_changes_nothing(pair: Pair) -> None:
    """The signalling activity carries no personal data, so no rule lets its case move."""
    officer = regie(pair)
    activity = "zvh.signalering"
    case_id = open_case(pair, activity=activity)
    err = await call_error(hand_over(pair, request(case_id, activity=activity), officer))
    assert err.code() is grpc.StatusCode.PERMISSION_DENIED
    assert "policy does not allow" in (err.details() or "")
    assert pair.nodes[RR].parts.registry.get(case_id).phase is Phase.CASUSOVERLEG
    (refused,) = records(pair.nodes[RR])
    assert refused.status == audit_pb2.SPAN_STATUS_ERROR
    assert refused.decision.outcome == common_pb2.DECISION_OUTCOME_DENY
    assert cases_about(pair.nodes[HL], expected_pseudonym(pair, HL)) == 0


async def test_peer_down_is_unavailable_and_the_case_stays_open(pair: Pair) -> None:
    officer = regie(pair)
    hl = pair.nodes.pop(HL)
    await hl.stop(grace=None)
    rr = pair.nodes[RR]
    case_id = open_case(pair)
    before = rr.parts.registry.get(case_id)
    err = await call_error(hand_over(pair, request(case_id), officer))
    assert err.code() is grpc.StatusCode.UNAVAILABLE
    assert "stays open" in (err.details() or "")
    assert rr.parts.registry.get(case_id) == before
    assert rr.parts.registry.transfer_of(case_id) is None
    attempt, failed = records(rr)
    assert attempt.status == audit_pb2.SPAN_STATUS_OK, "audited before the subject left"
    assert failed.status == audit_pb2.SPAN_STATUS_ERROR, "and marked as not completed"
    assert failed.case_ref == common_pb2.CaseRef(node_id=RR, case_id=case_id)


async def test_no_identifier_or_pseudonym_reaches_a_log_line(
    logs: LogCapture,  # noqa: F811 - the fixture imported above
    pair: Pair,
) -> None:
    officer = regie(pair)
    case_id = open_case(pair)
    await hand_over(pair, request(case_id), officer)
    await hand_over(pair, request(case_id), officer)
    assert logs.events("case_handed_over"), "the hand-over was logged"
    text = logs.stream.getvalue()
    for secret in (BSN, expected_pseudonym(pair, RR), expected_pseudonym(pair, HL)):
        assert secret not in text
