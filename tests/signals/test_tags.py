"""SetBottlenecks: tags from the policy bundle's list, on this node's own cases."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
import sqlalchemy as sa
from schakel.v1 import case_pb2, common_pb2

from gateway.cases import CaseNotFoundError, CaseRegistry, FactVault, count_cases
from gateway.flows.bottlenecks import BottleneckTagError, set_bottlenecks
from gateway.rpc.status import status_of
from gateway.storage import make_engine, migrate
from policy.loader import load_bundle
from policy.model import Bundle
from tests.cases.conftest import referral
from tests.signals.conftest import APR, MAR

BASELINE = Path(__file__).parents[2] / "policy" / "bundles" / "baseline" / "bundle.yaml"
NODE = "zvh-haaglanden"


@pytest.fixture
def engine(db_url: str) -> Iterator[sa.Engine]:
    eng = make_engine(db_url)
    migrate(eng)
    yield eng
    eng.dispose()


@pytest.fixture
def registry(engine: sa.Engine) -> CaseRegistry:
    return CaseRegistry(engine, FactVault(os.urandom(32)))


@pytest.fixture(scope="module")
def bundle() -> Bundle:
    return load_bundle(BASELINE)


def tag_request(
    case_id: str, *tags: str, node: str = NODE, activity: str = "zvh.complexe-casuistiek"
) -> case_pb2.SetBottlenecksRequest:
    return case_pb2.SetBottlenecksRequest(
        purpose=common_pb2.Purpose(processing_activity_id=activity),
        case_ref=common_pb2.CaseRef(node_id=node, case_id=case_id),
        tags=tags,
    )


def tags_in_db(engine: sa.Engine) -> list[tuple[str, str]]:
    with engine.connect() as conn:
        return sorted(
            (r[0], r[1]) for r in conn.exec_driver_sql("SELECT case_id, tag FROM case_bottlenecks")
        )


async def test_tags_are_set_replaced_and_counted(
    engine: sa.Engine, registry: CaseRegistry, bundle: Bundle
) -> None:
    case = registry.refer(referral()).case
    status = await set_bottlenecks(
        tag_request(case.id, "huisvesting", "schulden"), registry, bundle, NODE
    )
    assert (status.case_ref.case_id, list(status.bottlenecks)) == (
        case.id,
        ["huisvesting", "schulden"],
    )
    assert status.external_ref == ""
    status = await set_bottlenecks(tag_request(case.id, "zorgplek"), registry, bundle, NODE)
    assert list(status.bottlenecks) == ["zorgplek"]
    assert tags_in_db(engine) == [(case.id, "zorgplek")]
    cells = count_cases(engine, MAR.replace(year=2000), APR.replace(year=2100))
    assert [c.bottleneck for c in cells] == ["zorgplek"]
    status = await set_bottlenecks(tag_request(case.id), registry, bundle, NODE)
    assert list(status.bottlenecks) == []


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"tags": ("huisvesting", "geldzorgen")}, "unknown bottleneck tag(s) 'geldzorgen'"),
        ({"tags": ("schulden", "schulden")}, "tags are listed twice: 'schulden'"),
        ({"node": "zvh-twente"}, "sets tags only on its own cases"),
        ({"activity": "zvh.signalering"}, "must be the case's activity"),
        ({"case_id": ""}, "case_ref.case_id is required"),
    ],
)
async def test_bad_requests_change_nothing(
    engine: sa.Engine,
    registry: CaseRegistry,
    bundle: Bundle,
    change: dict[str, str | tuple[str, ...]],
    message: str,
) -> None:
    case = registry.refer(referral()).case
    await set_bottlenecks(tag_request(case.id, "huisvesting"), registry, bundle, NODE)
    tags = change.get("tags", ("zorgplek",))
    req = tag_request(
        str(change.get("case_id", case.id)),
        *tags,
        node=str(change.get("node", NODE)),
        activity=str(change.get("activity", "zvh.complexe-casuistiek")),
    )
    with pytest.raises(BottleneckTagError) as err:
        await set_bottlenecks(req, registry, bundle, NODE)
    assert message in str(err.value)
    assert err.value.code is grpc.StatusCode.INVALID_ARGUMENT
    assert tags_in_db(engine) == [(case.id, "huisvesting")]


async def test_unknown_case(registry: CaseRegistry, bundle: Bundle) -> None:
    with pytest.raises(CaseNotFoundError) as err:
        await set_bottlenecks(tag_request("0" * 32, "huisvesting"), registry, bundle, NODE)
    assert status_of(err.value) is grpc.StatusCode.NOT_FOUND
