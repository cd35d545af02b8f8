"""Every case action keeps its deadline when a peer node hangs, and names what did not arrive.

HL is reached from RR through a :class:`FreezingRelay`. Frozen, the relay
holds every connection open and moves no byte, as a peer stopped with
SIGSTOP does: calls to it neither fail nor answer. Uitvraag, closure,
hand-over and hit/no-hit must each answer within their deadline plus
0.5 s, and the answer (or the refusal) must name the peer's participants or
the peer itself.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from schakel.v1 import audit_pb2, case_pb2, case_pb2_grpc, common_pb2

from tests.support.caseflow import ANTECEDENTEN
from tests.support.flow import Flow, running_flow
from tests.support.frozen_peer import FreezingRelay
from tests.support.peerflow import (
    PARTNERS,
    open_accepted_case,
    records,
    regie,
    sections,
    sims,
)
from tests.support.pki import HL, RR
from tests.support.referrals import PURPOSE, refer

DEADLINE = 3.0
SLACK = 0.5
"""What the issue allows beyond the deadline: the last records and the answer."""
HL_PARTICIPANTS = ["gemeente-hl", "politie-hl"]


@dataclass
class Frozen:
    flow: Flow
    relay: FreezingRelay
    stub: case_pb2_grpc.CaseServiceAsyncStub
    case_ref: common_pb2.CaseRef
    """An accepted case with participants at RR and at HL."""


@pytest.fixture
async def frozen(tmp_path: Path) -> AsyncIterator[Frozen]:
    """RR and HL with their partners, an accepted case, then HL frozen as seen from RR."""
    relay = FreezingRelay()
    await relay.start()

    def dial(node_id: str, peer_id: str, address: str) -> str:
        if (node_id, peer_id) != (RR, HL):
            return address
        relay.upstream = address
        return relay.address

    try:
        async with running_flow(
            tmp_path, f"sqlite:///{tmp_path / 'rr.db'}", sections, dial=dial
        ) as flow:
            running = sims()
            for node_id, orgs in PARTNERS.items():
                for org_id, org_type in orgs:
                    await flow.run_partner(node_id, org_id, org_type, running[org_id])
            async with regie(flow) as channel:
                stub = case_pb2_grpc.CaseServiceStub(channel)
                ref = await open_accepted_case(flow, stub)
                relay.freeze()
                yield Frozen(flow, relay, stub, ref)
                relay.thaw()
    finally:
        await relay.close()


def _not_arrived(flow: Flow, method: str) -> list[str]:
    """The requesters of RR's records of ``method`` that say a release did not arrive."""
    return sorted(
        r.requester
        for r in records(flow, RR)
        if r.name.endswith(f"/{method}") and r.status == audit_pb2.SPAN_STATUS_ERROR
    )


async def test_uitvraag_keeps_its_deadline_and_names_the_frozen_peers_participants(
    frozen: Frozen,
) -> None:
    started = time.monotonic()
    result = await frozen.stub.StartUitvraag(
        case_pb2.StartUitvraagRequest(
            purpose=PURPOSE,
            case_ref=frozen.case_ref,
            categories=[ANTECEDENTEN],
            deadline_ms=int(DEADLINE * 1000),
        )
    )
    took = time.monotonic() - started
    assert took < DEADLINE + SLACK, f"StartUitvraag took {took:.2f} s"
    outcome = {p.provider.org_id: p for p in result.providers}
    assert not outcome["politie-hl"].answered and not outcome["gemeente-hl"].answered
    assert outcome["politie-rr"].answered
    undelivered = outcome["politie-rr"].undelivered
    assert sorted(p.org_id for p in undelivered) == HL_PARTICIPANTS
    assert {p.node_id for p in undelivered} == {HL}
    assert _not_arrived(frozen.flow, "StartUitvraag") == [
        f"schakel://partner/{HL}/{org}" for org in HL_PARTICIPANTS
    ]


async def test_closure_keeps_the_call_deadline_and_names_who_the_outcome_did_not_reach(
    frozen: Frozen,
) -> None:
    started = time.monotonic()
    status = await frozen.stub.CloseCase(
        case_pb2.CloseCaseRequest(
            purpose=PURPOSE, case_ref=frozen.case_ref, outcome="doelen-bereikt"
        ),
        timeout=DEADLINE,
    )
    took = time.monotonic() - started
    assert took < DEADLINE + SLACK, f"CloseCase took {took:.2f} s"
    assert status.phase == common_pb2.PHASE_AFSCHALING
    assert sorted(p.org_id for p in status.undelivered) == HL_PARTICIPANTS
    assert _not_arrived(frozen.flow, "CloseCase") == [
        f"schakel://partner/{HL}/{org}" for org in HL_PARTICIPANTS
    ]


async def test_hand_over_to_a_frozen_peer_fails_within_the_deadline_naming_it(
    frozen: Frozen,
) -> None:
    started = time.monotonic()
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await frozen.stub.HandOverCase(
            case_pb2.HandOverCaseRequest(
                purpose=PURPOSE,
                case_ref=frozen.case_ref,
                target_node_id=HL,
                idempotency_key="verhuizing-1",
                reason_code="betrokkene-verhuisd",
            ),
            timeout=DEADLINE,
        )
    took = time.monotonic() - started
    assert took < DEADLINE + SLACK, f"HandOverCase took {took:.2f} s"
    assert caught.value.code() is grpc.StatusCode.UNAVAILABLE
    assert HL in (caught.value.details() or "")
    case = frozen.flow.pair.nodes[RR].parts.registry.get(frozen.case_ref.case_id)
    assert case.is_open


async def test_hit_no_hit_keeps_its_deadline_and_names_the_frozen_peer(frozen: Frozen) -> None:
    fresh = await refer(frozen.flow, RR, "politie-rr", "politie", key="ref-2")
    started = time.monotonic()
    result = await frozen.stub.RunHitNoHit(
        case_pb2.RunHitNoHitRequest(
            purpose=PURPOSE, case_ref=fresh.case_ref, deadline_ms=int(DEADLINE * 1000)
        )
    )
    took = time.monotonic() - started
    assert took < DEADLINE + SLACK, f"RunHitNoHit took {took:.2f} s"
    assert HL in result.unanswered


async def test_a_short_grpc_deadline_bounds_the_uitvraag_too(frozen: Frozen) -> None:
    started = time.monotonic()
    result = await frozen.stub.StartUitvraag(
        case_pb2.StartUitvraagRequest(
            purpose=PURPOSE, case_ref=frozen.case_ref, categories=[ANTECEDENTEN], deadline_ms=20_000
        ),
        timeout=DEADLINE,
    )
    took = time.monotonic() - started
    assert took < DEADLINE, f"StartUitvraag took {took:.2f} s"
    outcome = {p.provider.org_id: p for p in result.providers}
    assert not outcome["politie-hl"].answered
