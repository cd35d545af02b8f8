"""Bottleneck tags: from the policy bundle's list, each once, set and counted."""

from __future__ import annotations

import os
from collections.abc import Iterator

import grpc
import pytest
import sqlalchemy as sa

from gateway.cases import CaseRegistry, FactVault, case_status, count_cases
from gateway.flows.bottlenecks import MAX_TAGS, BottleneckTagError, check_tags
from gateway.rpc.status import status_of
from gateway.storage import make_engine, migrate
from policy.loader import load_bundle
from policy.model import Bundle
from tests.support.cases import referral
from tests.support.paths import ROOT
from tests.support.signals import APR, MAR

BASELINE = ROOT / "policy" / "bundles" / "baseline" / "bundle.yaml"
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


def tags_in_db(engine: sa.Engine) -> list[tuple[str, str]]:
    with engine.connect() as conn:
        return sorted(
            (r[0], r[1]) for r in conn.exec_driver_sql("SELECT case_id, tag FROM case_bottlenecks")
        )


def test_tags_are_set_replaced_and_counted(
    engine: sa.Engine, registry: CaseRegistry, bundle: Bundle
) -> None:
    case = registry.refer(referral()).case
    status = case_status(
        registry.set_bottlenecks(case.id, check_tags(["huisvesting", "schulden"], bundle)),
        NODE,
        for_referrer=False,
    )
    assert (status.case_ref.case_id, list(status.bottlenecks)) == (
        case.id,
        ["huisvesting", "schulden"],
    )
    assert status.external_ref == ""
    tagged = registry.set_bottlenecks(case.id, check_tags(["zorgplek"], bundle))
    assert tagged.bottlenecks == ("zorgplek",)
    assert tags_in_db(engine) == [(case.id, "zorgplek")]
    cells = count_cases(engine, MAR.replace(year=2000), APR.replace(year=2100))
    assert [c.bottleneck for c in cells] == ["zorgplek"]
    assert registry.set_bottlenecks(case.id, check_tags([], bundle)).bottlenecks == ()


@pytest.mark.parametrize(
    ("tags", "message"),
    [
        (["huisvesting", "geldzorgen"], "unknown bottleneck tag(s) 'geldzorgen'"),
        (["schulden", "schulden"], "tags are listed twice: 'schulden'"),
        ([f"tag-{i}" for i in range(MAX_TAGS + 1)], f"tags: at most {MAX_TAGS}"),
    ],
)
def test_bad_tags_are_refused(bundle: Bundle, tags: list[str], message: str) -> None:
    """Case reference and purpose are CaseService checks (tests/gateway/rpc/test_case_tags.py)."""
    with pytest.raises(BottleneckTagError) as err:
        check_tags(tags, bundle)
    assert message in str(err.value)
    assert status_of(err.value) is grpc.StatusCode.INVALID_ARGUMENT
