"""Start-up reconciliation: no case exists that the audit log does not show.

A referral (:mod:`gateway.flows.aanmelding`) or a hand-over from a peer
(:mod:`gateway.flows.overname`) commits its case, then writes its audit
record, then answers. When the record cannot be written the case is
withdrawn before the caller hears of it, but a node killed between the
commit and the record leaves a case that no record shows, and whose sender
was never answered OK. So before a node serves, every case still in
aanmelding is looked up in the log; one that no OK record names is
withdrawn, and the withdrawal is audited first: a record named
:data:`METHOD` with status ERROR, about the case's subject, so it shows in
that person's inzage. The referrer's retry with the same idempotency key
then opens the case anew.

A case whose subject has records with erased bodies is kept: its referral
record might be one of them.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from schakel.v1 import audit_pb2, common_pb2

from certs.identity import Identity, PeerKind
from gateway.audit import query
from gateway.cases import IllegalTransitionError
from gateway.cases.store import OpenReferral
from gateway.flows.crossing import Crossing, record
from gateway.logging import get_logger
from policy.vocabulary import REFERRAL, REGIE, Phase

if TYPE_CHECKING:
    from gateway.parts import NodeParts

log = get_logger("reconcile")

METHOD = "schakel.node/WithdrawUnrecordedReferral"
"""The audit name of a withdrawal at start-up."""
LOOK_BACK = timedelta(minutes=10)
"""How long before its case was opened a referral's record may have started."""


def _has_record(entries: list[audit_pb2.AuditEntry], node_id: str, case_id: str) -> bool | None:
    """True when an OK record names the case (its referral or hand-over first of all);
    None when an erased body might."""
    for entry in entries:
        if entry.erased:
            return None
        r = entry.record
        if (
            r.status == audit_pb2.SPAN_STATUS_OK
            and r.case_ref.node_id == node_id
            and r.case_ref.case_id == case_id
        ):
            return True
    return False


async def reconcile_referrals(
    parts: NodeParts, *, older_than: timedelta = timedelta(0)
) -> list[str]:
    """Withdraw the cases in aanmelding whose referral never reached the log; their ids.

    Call once before serving. With replicas, others serve meanwhile and may
    be between a case's commit and its record: only cases opened more than
    ``older_than`` ago are looked at then. Raises AuditUnavailableError when
    a withdrawal cannot be audited (then that case and the rest stay).
    """
    opened = await asyncio.to_thread(parts.registry.open_referrals)
    before = datetime.now(UTC) - older_than
    withdrawn = []
    for referral in opened:
        if not referral.subject or referral.opened_at > before:
            continue
        found = await asyncio.to_thread(
            query.query,
            parts.engine,
            query.Filter(data_subject_id=referral.subject, since=referral.opened_at - LOOK_BACK),
        )
        if _has_record(found, parts.node_id, referral.case_id) is not False:
            continue
        if await _withdraw(parts, referral):
            withdrawn.append(referral.case_id)
    if withdrawn:
        log.warning("unrecorded_referrals_withdrawn", count=len(withdrawn))
    return withdrawn


async def _withdraw(parts: NodeParts, referral: OpenReferral) -> bool:
    """Audit, then withdraw one unrecorded case; False when it turns out to have more attached."""
    case = await asyncio.to_thread(parts.registry.get, referral.case_id)
    activity_uri = ""
    if parts.policy is not None:
        activity = parts.policy.evaluator.policy.bundle.activities.get(case.activity)
        activity_uri = activity.uri if activity is not None else ""
    node = Identity(PeerKind.NODE, parts.node_id, "", "node", frozenset(), "")
    # Who sent the case: a partner of this node, or (a hand-over) a peer node.
    sender = (
        f"schakel://node/{case.referrer_org_id}"
        if case.referrer_org_type == REGIE
        else f"schakel://partner/{parts.node_id}/{case.referrer_org_id}"
    )
    await record(
        parts.audit,
        Crossing(
            name=METHOD,
            caller=node,
            activity=case.activity,
            activity_uri=activity_uri,
            phase=Phase.AANMELDING.to_proto(),
            case_ref=common_pb2.CaseRef(node_id=parts.node_id, case_id=case.id),
            subject=case.subject,
            categories=(REFERRAL,),
            provider=sender,
        ),
        ok=False,
    )
    try:
        await asyncio.to_thread(parts.registry.withdraw, case.id)
    except IllegalTransitionError:
        # Something was attached after all: keep the case, its record says we tried.
        log.error("unrecorded_referral_kept", case_id=case.id)
        return False
    return True


__all__ = ["LOOK_BACK", "METHOD", "reconcile_referrals"]
