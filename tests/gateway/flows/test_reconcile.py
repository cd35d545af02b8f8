"""A case and its audit record are one unit: at start a node withdraws cases the log does not show.

A node killed between committing a referral's case and writing its record
leaves such a case behind. The crash is reproduced here exactly: the case
is committed through the registry, as the referral does, and the node
stops before any record is written.
"""

from __future__ import annotations

import asyncio
import os
from datetime import timedelta

import pytest
from schakel.v1 import audit_pb2

from gateway.audit.records import decode
from gateway.audit.store import iter_leaves
from gateway.cases import CaseNotFoundError, Referral
from gateway.duties import reconcile_loop
from gateway.flows.reconcile import METHOD
from tests.support.caseflow import node
from tests.support.flow import Flow
from tests.support.pki import RR
from tests.support.referrals import refer
from tests.support.streams import restart


def records(flow: Flow) -> list[audit_pb2.AuditRecord]:
    with node(flow).parts.engine.connect() as conn:
        return [decode(d) for _, _, d in iter_leaves(conn) if d is not None]


async def test_a_case_without_its_referral_record_is_withdrawn_at_start_and_audited(
    flow: Flow,
) -> None:
    recorded = (await refer(flow, RR, "politie-rr", "politie")).case_ref
    await node(flow).parts.tasks.settle()
    subject = os.urandom(32).hex()
    orphan = node(flow).parts.registry.refer(
        Referral(
            referrer_org_id="politie-rr",
            referrer_org_type="politie",
            idempotency_key="killed-before-its-record",
            subject=subject,
            activity="zvh.complexe-casuistiek",
            theme="complexe-casuistiek",
            external_ref="REF-9",
        )
    )
    assert orphan.created

    await restart(flow)

    registry = node(flow).parts.registry
    with pytest.raises(CaseNotFoundError):
        registry.get(orphan.case.id)
    assert registry.get(recorded.case_id).id == recorded.case_id
    (withdrawal,) = [r for r in records(flow) if r.name == METHOD]
    assert withdrawal.status == audit_pb2.SPAN_STATUS_ERROR
    assert withdrawal.case_ref.case_id == orphan.case.id
    assert withdrawal.data_subject_id == subject
    assert withdrawal.provider == f"schakel://partner/{RR}/politie-rr"

    # A later start finds nothing more to withdraw.
    await restart(flow)
    assert [r.case_ref.case_id for r in records(flow) if r.name == METHOD] == [orphan.case.id]
    assert registry is not node(flow).parts.registry
    assert node(flow).parts.registry.get(recorded.case_id).id == recorded.case_id


async def test_the_leader_withdraws_an_unrecorded_referral_while_the_node_serves(
    flow: Flow,
) -> None:
    # A replica killed mid-referral leaves its case; the others keep serving and do not restart.
    recorded = (await refer(flow, RR, "politie-rr", "politie")).case_ref
    await node(flow).parts.tasks.settle()
    parts = node(flow).parts
    orphan = parts.registry.refer(
        Referral(
            referrer_org_id="politie-rr",
            referrer_org_type="politie",
            idempotency_key="replica-killed-before-its-record",
            subject=os.urandom(32).hex(),
            activity="zvh.complexe-casuistiek",
            theme="complexe-casuistiek",
            external_ref="REF-10",
        )
    )
    ended = asyncio.Event()
    loop = asyncio.create_task(reconcile_loop(parts, ended, interval=0.05, grace=timedelta(0)))
    try:
        for _ in range(200):
            if any(r.name == METHOD for r in records(flow)):
                break
            await asyncio.sleep(0.05)
    finally:
        ended.set()
        await loop
    with pytest.raises(CaseNotFoundError):
        parts.registry.get(orphan.case.id)
    assert parts.registry.get(recorded.case_id).id == recorded.case_id
    assert [r.case_ref.case_id for r in records(flow) if r.name == METHOD] == [orphan.case.id]


async def test_the_leader_leaves_a_referral_younger_than_the_grace_alone(flow: Flow) -> None:
    parts = node(flow).parts
    young = parts.registry.refer(
        Referral(
            referrer_org_id="politie-rr",
            referrer_org_type="politie",
            idempotency_key="still-being-referred",
            subject=os.urandom(32).hex(),
            activity="zvh.complexe-casuistiek",
            theme="complexe-casuistiek",
            external_ref="REF-11",
        )
    )
    ended = asyncio.Event()
    loop = asyncio.create_task(reconcile_loop(parts, ended, interval=0.05))
    await asyncio.sleep(0.3)
    ended.set()
    await loop
    assert parts.registry.get(young.case.id).id == young.case.id
    assert not [r for r in records(flow) if r.name == METHOD]
