"""Federated hit/no-hit, uitvraag and transfer between whole nodes over mTLS."""

from __future__ import annotations

import time

import grpc
import pytest
from schakel.v1 import common_pb2, federation_pb2, federation_pb2_grpc

from gateway.cases.links import LinkState
from gateway.cases.model import GroundKind, Participant
from gateway.cases.phases import Phase
from gateway.federation import PeerCallError
from tests.support.cluster import BSN, PURPOSE, A, B, C, Cluster
from tests.support.peercases import CASE, open_case_at
from tests.support.pki import LogCapture


def link_at(cluster: Cluster, node_id: str, participant: Participant, *types: str) -> None:
    """Node ``node_id`` holds A's link for :data:`CASE`, with ``participant`` taking part there."""
    cluster.nodes[node_id].parts.links.hold(
        LinkState(
            node_id=A,
            case_id=CASE.case_id,
            subject=cluster.pseudonym_at(node_id),
            activity=PURPOSE,
            phase=Phase.CASUSOVERLEG,
            participants=(participant,),
            org_types=frozenset({participant.org_type, *types}),
        ),
        retention_days=30,
    )


async def ask(
    cluster: Cluster, phase: int = common_pb2.PHASE_AANMELDING
) -> dict[str, tuple[bool, str]]:
    peers = cluster.nodes[A].parts.peers
    assert peers is not None
    result = await peers.hit_no_hit(
        purpose=PURPOSE,
        case_ref=CASE,
        phase=phase,
        subject_for=cluster.subject_for(A),
        deadline=5.0,
    )
    assert result.unanswered == {}
    return {node_id: (hit.hit, hit.contact_handle) for node_id, hit in result.answers.items()}


async def test_hit_at_a_peer_with_an_active_case_and_no_hit_elsewhere(trio: Cluster) -> None:
    case_id = open_case_at(trio, B)
    before = trio.nodes[B].parts.audit.head().size
    answers = await ask(trio)
    assert answers == {B: (True, f"procesregie@{B}.example"), C: (False, "")}
    assert trio.nodes[B].parts.audit.head().size == before + 1, "the answer was audited first"
    registry = trio.nodes[B].parts.registry
    registry.start_triage(case_id)
    assert (await ask(trio, common_pb2.PHASE_TRIAGE))[B] == (True, f"procesregie@{B}.example")
    registry.reject(case_id, reason_code="geen-criteria", retention_days=30)
    assert (await ask(trio))[B] == (False, ""), "a closed case is no hit"


async def test_another_subject_is_no_hit(trio: Cluster) -> None:
    open_case_at(trio, B, bsn="111222333")
    peers = trio.nodes[A].parts.peers
    assert peers is not None
    result = await peers.hit_no_hit(
        purpose=PURPOSE,
        case_ref=CASE,
        phase=common_pb2.PHASE_AANMELDING,
        subject_for=trio.subject_for(A, bsn="123456782"),
        deadline=5.0,
    )
    assert {n: h.hit for n, h in result.answers.items()} == {B: False, C: False}


async def test_policy_refuses_hit_no_hit_in_casusoverleg(trio: Cluster) -> None:
    open_case_at(trio, B)
    peers = trio.nodes[A].parts.peers
    assert peers is not None
    result = await peers.hit_no_hit(
        purpose=PURPOSE,
        case_ref=CASE,
        phase=common_pb2.PHASE_CASUSOVERLEG,
        subject_for=trio.subject_for(A),
        deadline=5.0,
    )
    assert result.answers == {}
    assert result.unanswered == {B: "refused", C: "refused"}


async def test_subject_for_another_domain_is_refused_with_a_clear_error(trio: Cluster) -> None:
    channel = trio.channel(B, trio.fed.node(A, force=True))
    async with channel:
        stub = federation_pb2_grpc.FederationServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.HitNoHit(
                federation_pb2.FederatedHitRequest(
                    purpose=common_pb2.Purpose(processing_activity_id=PURPOSE),
                    case_ref=CASE,
                    subject=trio.subject_for(A)(C),
                    phase=common_pb2.PHASE_AANMELDING,
                ),
                timeout=5,
            )
    assert err.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert f"encrypted for this node's domain {B!r}" in (err.value.details() or "")
    assert BSN not in (err.value.details() or "")


@pytest.mark.parametrize("who", ["partner", "officer", "unlisted-node"])
async def test_only_listed_nodes_may_call(trio: Cluster, who: str) -> None:
    cred = {
        "partner": lambda: trio.fed.partner(A, "politie-zh", "politie"),
        "officer": lambda: trio.fed.officer(A, "procesregisseur"),
        "unlisted-node": lambda: trio.fed.node("zvh-stranger"),
    }[who]()
    open_case_at(trio, B)
    async with trio.channel(B, cred) as channel:
        stub = federation_pb2_grpc.FederationServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.HitNoHit(
                federation_pb2.FederatedHitRequest(
                    purpose=common_pb2.Purpose(processing_activity_id=PURPOSE),
                    case_ref=common_pb2.CaseRef(node_id=cred.identity.node_id, case_id="0" * 32),
                    subject=trio.subject_for(A)(B),
                    phase=common_pb2.PHASE_AANMELDING,
                ),
                timeout=5,
            )
    assert err.value.code() is grpc.StatusCode.PERMISSION_DENIED
    expected = "federation directory" if who == "unlisted-node" else "only federation nodes"
    assert expected in (err.value.details() or "")


async def test_request_facts_releases_minimised_facts_under_the_peers_policy(
    trio: Cluster,
) -> None:
    case_id = open_case_at(trio, B)
    registry = trio.nodes[B].parts.registry
    registry.start_triage(case_id)
    police = Participant("politie-zh", "politie", B)
    registry.accept(case_id, reason_code="criteria-ok", participants=[police])
    fact = common_pb2.Fact(category="justitie.antecedenten")
    fact.fields["aantal"].number = 4
    fact.fields["zwaarste_soort"].text = "geweld"
    fact.fields["laatste_datum"].date.year = 2024
    fact.fields["laatste_datum"].date.month = 5
    fact.fields["laatste_datum"].date.day = 17
    registry.store_fact(case_id, fact, provider=police)
    link_at(trio, B, police)
    peers = trio.nodes[A].parts.peers
    assert peers is not None
    result = await peers.request_facts(
        purpose=PURPOSE,
        case_ref=CASE,
        phase=common_pb2.PHASE_CASUSOVERLEG,
        subject_for=trio.subject_for(A),
        categories=["justitie.antecedenten", "sociaal.huisvesting"],
        recipient_org_type="zvh",
        deadline=5.0,
        only=[B, C],
    )
    # C holds no link for A's case, so it answers nothing about it.
    assert result.unanswered == {C: "refused"}
    at_b = result.answers[B]
    assert [f.category for f in at_b.facts] == ["justitie.antecedenten"]
    released = at_b.facts[0].fields
    assert released["aantal"].text == "3-5", "counts are banded"
    assert released["laatste_datum"].date == common_pb2.Date(year=2024), "dates coarsened"
    assert at_b.decision.outcome == common_pb2.DECISION_OUTCOME_PARTIAL
    assert [(w.category, w.reason) for w in at_b.decision.withheld] == [
        ("sociaal.huisvesting", "not-held")
    ]
    assert "cc-politie-antecedenten" in at_b.decision.rule_ids


async def test_transfer_is_idempotent(trio: Cluster) -> None:
    peers = trio.nodes[A].parts.peers
    assert peers is not None
    subject = trio.subject_for(A)(C)
    kwargs = {
        "to": C,
        "purpose": PURPOSE,
        "case_ref": CASE,
        "subject": subject,
        "theme": "verward-gedrag",
        "phase": common_pb2.PHASE_CASUSOVERLEG,
        "bottlenecks": ["huisvesting"],
        "deadline": 5.0,
    }
    first = await peers.transfer_case(idempotency_key="move-1", **kwargs)  # type: ignore[arg-type]
    again = await peers.transfer_case(idempotency_key="move-1", **kwargs)  # type: ignore[arg-type]
    assert first.created and not again.created
    assert first.case_ref == again.case_ref
    assert first.case_ref.node_id == C
    case = trio.nodes[C].parts.registry.get(first.case_ref.case_id)
    assert case.subject == trio.pseudonym_at(C)
    assert case.referrer_org_id == A and case.external_ref == f"{A}/{CASE.case_id}"
    assert case.bottlenecks == ("huisvesting",)
    assert (await ask(trio))[C][0] is True, "the transferred case is active at C"
    with pytest.raises(PeerCallError) as err:
        await peers.transfer_case(
            idempotency_key="move-1",
            **{**kwargs, "theme": "huiselijk-geweld"},  # type: ignore[arg-type]
        )
    assert err.value.reason == "refused"
    assert err.value.code is grpc.StatusCode.ALREADY_EXISTS or err.value.code is None
    with pytest.raises(ValueError, match="idempotency key"):
        await peers.transfer_case(idempotency_key="", **kwargs)  # type: ignore[arg-type]


async def test_unknown_bottleneck_in_a_transfer_changes_nothing(trio: Cluster) -> None:
    peers = trio.nodes[A].parts.peers
    assert peers is not None
    with pytest.raises(PeerCallError):
        await peers.transfer_case(
            to=C,
            purpose=PURPOSE,
            case_ref=CASE,
            subject=trio.subject_for(A)(C),
            theme="verward-gedrag",
            phase=common_pb2.PHASE_AANMELDING,
            bottlenecks=["no-such-tag"],
            idempotency_key="move-2",
            deadline=5.0,
        )
    assert (await ask(trio))[C][0] is False


async def test_fan_out_costs_about_one_round_trip(trio: Cluster) -> None:
    start = time.monotonic()
    await ask(trio)
    assert time.monotonic() - start < 2.0


async def test_no_identifier_or_pseudonym_reaches_a_log_line(
    logs: LogCapture, trio: Cluster
) -> None:
    open_case_at(trio, B)
    await ask(trio)
    peers = trio.nodes[A].parts.peers
    assert peers is not None
    refused = await peers.hit_no_hit(
        purpose=PURPOSE,
        case_ref=CASE,
        phase=common_pb2.PHASE_CASUSOVERLEG,
        subject_for=trio.subject_for(A),
        deadline=5.0,
    )
    assert refused.unanswered == {B: "refused", C: "refused"}
    text = logs.stream.getvalue()
    assert "HitNoHit" in text, "the calls were logged"
    for secret in (BSN, trio.pseudonym_at(B), trio.pseudonym_at(C), trio.pseudonym_at(A)):
        assert secret not in text


async def test_a_ground_of_the_peers_own_case_never_counts_for_the_askers_case(
    trio: Cluster,
) -> None:
    """Consent recorded in B's case is consent for B's case; A's case asks without a ground."""
    case_id = open_case_at(trio, B)
    registry = trio.nodes[B].parts.registry
    registry.start_triage(case_id)
    ggz = Participant("ggz-zh", "ggz", B)
    registry.accept(case_id, reason_code="criteria-ok", participants=[ggz])
    fact = common_pb2.Fact(category="zorg.in_zorg")
    fact.fields["in_zorg"].flag = True
    registry.store_fact(case_id, fact, provider=ggz)
    registry.record_ground(
        case_id,
        kind=GroundKind.CONSENT,
        category="zorg.in_zorg",
        provider_org_id="ggz-zh",
        evidence_ref="REF-consent",
    )
    link_at(trio, B, ggz, "gemeente")
    peers = trio.nodes[A].parts.peers
    assert peers is not None
    result = await peers.request_facts(
        purpose=PURPOSE,
        case_ref=CASE,
        phase=common_pb2.PHASE_CASUSOVERLEG,
        subject_for=trio.subject_for(A),
        categories=["zorg.in_zorg"],
        recipient_org_type="gemeente",
        deadline=5.0,
        only=[B],
    )
    # RequestFacts counts no ground, so B refuses the care category outright.
    assert result.answers == {}
    assert result.unanswered == {B: "refused"}
