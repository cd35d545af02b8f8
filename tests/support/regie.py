"""CaseService over mTLS: two whole nodes with local partners, and a case to act on.

The nodes come from :func:`tests.support.flow.flow` (RR on SQLite, then
PostgreSQL; HL on SQLite). A case is opened straight in RR's registry with
the subject's real node-domain pseudonym, the way a referral would open it,
so that what the audit log holds can be looked up as inzage does: by that
pseudonym.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from schakel.v1 import audit_pb2, case_pb2_grpc, common_pb2

from gateway.audit.query import Filter, query
from gateway.cases import Case, Participant, Referral
from policy.vocabulary import Phase
from tests.support.flow import ACTIVITY, Flow, flow
from tests.support.pki import RR

__all__ = ["flow"]

BSN = "111222333"
PURPOSE = common_pb2.Purpose(processing_activity_id=ACTIVITY)


def node_pseudonym(running: Flow, bsn: str = BSN) -> str:
    """The subject's pseudonym in RR's own domain, as RR computes it from a referral."""
    return running.pseudonym_at(RR, bsn)


def open_case(
    running: Flow, *, key: str = "ref-1", activity: str = ACTIVITY, accepted: bool = False
) -> Case:
    """A case at RR about :data:`BSN` for ``activity``; in casusoverleg when ``accepted``."""
    registry = running.pair.nodes[RR].parts.registry
    case = registry.refer(
        Referral(
            referrer_org_id="politie-rr",
            referrer_org_type="politie",
            idempotency_key=key,
            subject=node_pseudonym(running),
            activity=activity,
            theme="complexe-casuistiek",
        )
    ).case
    if accepted:
        registry.start_triage(case.id)
        case = registry.accept(
            case.id,
            reason_code="ontvankelijk",
            participants=[Participant("politie-rr", "politie", RR)],
        )
    return case


def case_in(running: Flow, phase: Phase, *, key: str) -> Case:
    """A case at RR about :data:`BSN` brought to ``phase`` along the legal path.

    Afschaling is reached by closing the case in casusoverleg.
    """
    registry = running.pair.nodes[RR].parts.registry
    case = open_case(running, key=key, accepted=phase in (Phase.CASUSOVERLEG, Phase.AFSCHALING))
    if phase is Phase.TRIAGE:
        case = registry.start_triage(case.id)
    if phase is Phase.AFSCHALING:
        case = registry.close(case.id, outcome="doelen-bereikt", retention_days=30)
    assert case.phase is phase
    return case


def case_ref(case: Case) -> common_pb2.CaseRef:
    """The reference of a case at RR."""
    return common_pb2.CaseRef(node_id=RR, case_id=case.id)


@asynccontextmanager
async def regie(running: Flow) -> AsyncIterator[case_pb2_grpc.CaseServiceStub]:
    """A CaseService stub for RR's procesregisseur."""
    officer = running.pair.fed.officer(RR, "procesregisseur")
    async with running.pair.channel(RR, officer) as channel:
        yield case_pb2_grpc.CaseServiceStub(channel)


def about(running: Flow, pseudonym: str) -> list[audit_pb2.AuditRecord]:
    """Every record RR's audit log holds about ``pseudonym``, oldest first, as inzage finds them."""
    engine = running.pair.nodes[RR].parts.engine
    return [e.record for e in query(engine, Filter(data_subject_id=pseudonym))]
