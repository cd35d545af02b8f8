"""GetSignals end to end: real nodes, real mTLS, the real access rules, a real database."""

from __future__ import annotations

import re

import grpc
import pytest
from schakel.v1 import common_pb2, federation_pb2, federation_pb2_grpc

from certs.identity import PeerKind, make_identity
from gateway.flows.signalering import SIGNALS_ACTIVITY
from tests.support.pki import HL, OIN, RR, Federation, LogCapture, StartNode, channel_to
from tests.support.signals import APR, MAR, march_plan, populate, start_signals_node


def request(
    start: object = MAR, end: object = APR, activity: str = SIGNALS_ACTIVITY
) -> federation_pb2.SignalsRequest:
    req = federation_pb2.SignalsRequest(purpose=common_pb2.Purpose(processing_activity_id=activity))
    if start is not None:
        req.period_start.FromDatetime(start)  # type: ignore[arg-type]
    if end is not None:
        req.period_end.FromDatetime(end)  # type: ignore[arg-type]
    return req


async def test_a_collector_gets_nothing_but_suppressed_aggregates(
    federation: Federation, start_node: StartNode, logs: LogCapture
) -> None:
    node = await start_signals_node(start_node, federation, HL)
    subjects = populate(node.engine, march_plan())
    async with channel_to(node, federation.collector(), federation.ca_file) as channel:
        answer = await federation_pb2_grpc.FederationServiceStub(channel).GetSignals(request())
    assert [f.name for f, _ in answer.ListFields()] == ["node_id", "k", "cells", "case_totals"]
    assert (answer.node_id, answer.k) == (HL, 10)
    cells = {
        (c.theme, common_pb2.Phase.Name(c.phase), c.outcome, c.bottleneck): (c.count, c.suppressed)
        for c in answer.cells
    }
    cc, nz = "complexe-casuistiek", "nazorg-ex-gedetineerden"
    assert cells == {
        (cc, "PHASE_AANMELDING", "", "zorgplek"): (0, True),
        (cc, "PHASE_CASUSOVERLEG", "", "huisvesting"): (25, False),
        (cc, "PHASE_CASUSOVERLEG", "", "schulden"): (11, False),
        (cc, "PHASE_CASUSOVERLEG", "", "zorgplek"): (0, True),
        (nz, "PHASE_AANMELDING", "", ""): (0, True),
        (nz, "PHASE_AFSCHALING", "doelen-bereikt", ""): (0, True),
        (cc, "PHASE_UNSPECIFIED", "*", "*"): (51, False),
        (nz, "PHASE_UNSPECIFIED", "*", "*"): (22, False),
        ("*", "PHASE_UNSPECIFIED", "*", ""): (22, False),
        ("*", "PHASE_UNSPECIFIED", "*", "huisvesting"): (25, False),
        ("*", "PHASE_UNSPECIFIED", "*", "schulden"): (11, False),
        ("*", "PHASE_UNSPECIFIED", "*", "zorgplek"): (15, False),
        ("*", "PHASE_UNSPECIFIED", "*", "*"): (73, False),
    }
    # Cases, not tag entries: the 11 cases with two tags count once. Afschaling (2) is small,
    # so aanmelding is suppressed beside it; the one outcome lies inside the small afschaling.
    totals = {
        (federation_pb2.CaseDimension.Name(t.dimension), t.key): (t.count, t.suppressed)
        for t in answer.case_totals
    }
    assert totals == {
        ("CASE_DIMENSION_ALL", "*"): (62, False),
        ("CASE_DIMENSION_THEME", cc): (40, False),
        ("CASE_DIMENSION_THEME", nz): (22, False),
        ("CASE_DIMENSION_PHASE", "aanmelding"): (0, True),
        ("CASE_DIMENSION_PHASE", "casusoverleg"): (37, False),
        ("CASE_DIMENSION_PHASE", "afschaling"): (0, True),
        ("CASE_DIMENSION_OUTCOME", "doelen-bereikt"): (0, True),
        ("CASE_DIMENSION_BOTTLENECK", ""): (22, False),
        ("CASE_DIMENSION_BOTTLENECK", "huisvesting"): (25, False),
        ("CASE_DIMENSION_BOTTLENECK", "schulden"): (11, False),
        ("CASE_DIMENSION_BOTTLENECK", "zorgplek"): (15, False),
    }
    # Nothing personal or identifying travels: no pseudonym, case id, organisation or reference.
    wire = answer.SerializeToString()
    with node.engine.connect() as conn:
        case_ids = [r[0] for r in conn.exec_driver_sql("SELECT id FROM cases")]
    for secret in [*subjects, *case_ids, "politie-haaglanden", "ggz-parnassia", "EXT-"]:
        assert secret.encode() not in wire
    text = str(answer) + logs.stream.getvalue()
    assert not re.search(r"[0-9a-f]{64}", text)
    assert not any(s in logs.stream.getvalue() for s in subjects)


@pytest.mark.parametrize("who", ["partner", "node", "officer", "foreign-node"])
async def test_only_collector_certificates_may_call_get_signals(
    federation: Federation, start_node: StartNode, who: str
) -> None:
    node = await start_signals_node(start_node, federation, HL)
    populate(node.engine, march_plan())
    cred = {
        "partner": lambda: federation.partner(HL, "politie-haaglanden", "politie"),
        "node": lambda: federation.credential(
            "same-node", make_identity(PeerKind.NODE, node_id=HL, oin=OIN)
        ),
        "officer": lambda: federation.officer(HL, "procesregisseur"),
        "foreign-node": lambda: federation.node(RR),
    }[who]()
    async with channel_to(node, cred, federation.ca_file) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await federation_pb2_grpc.FederationServiceStub(channel).GetSignals(request())
    assert err.value.code() is grpc.StatusCode.PERMISSION_DENIED
    assert "only the national collector may call this" in (err.value.details() or "")


@pytest.mark.parametrize(
    ("req", "message"),
    [
        (request(activity="zvh.complexe-casuistiek"), "purpose.processing_activity_id must be"),
        (request(start=None), "period_start is required"),
        (request(end=None), "period_end is required"),
        (request(start=APR, end=MAR), "must be after period_start"),
        (request(start=MAR, end=MAR), "must be after period_start"),
        (
            request(start=MAR, end=MAR.replace(year=2037)),
            "the period may cover at most 3653 days",
        ),
    ],
)
async def test_bad_requests_are_refused_with_the_reason(
    federation: Federation,
    start_node: StartNode,
    req: federation_pb2.SignalsRequest,
    message: str,
) -> None:
    node = await start_signals_node(start_node, federation, HL)
    async with channel_to(node, federation.collector(), federation.ca_file) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await federation_pb2_grpc.FederationServiceStub(channel).GetSignals(req)
    assert err.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert message in (err.value.details() or "")


async def test_a_collector_certificate_reaches_nothing_but_get_signals(
    federation: Federation, start_node: StartNode
) -> None:
    node = await start_signals_node(start_node, federation, HL)
    async with channel_to(node, federation.collector(), federation.ca_file) as channel:
        stub = federation_pb2_grpc.FederationServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.HitNoHit(federation_pb2.FederatedHitRequest())
    assert err.value.code() is grpc.StatusCode.PERMISSION_DENIED
    assert "only federation nodes may call this" in (err.value.details() or "")
