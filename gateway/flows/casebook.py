"""What the procesregisseur reads: the case list and one case with its history.

The list names no person (:mod:`gateway.cases.listing`), so reading it is
not audited. Opening a case shows its subject's pseudonym, participants,
grounds, facts and the decisions taken about the person, so every view is
a crossing of its own (:data:`VIEW_METHOD`), checked like any action on the
case (:func:`gateway.flows.regie.begin`) and recorded before anything is
shown: it appears in the person's inzage.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING

from schakel.v1 import audit_pb2

from certs.identity import Identity
from gateway.audit.query import Filter, query
from gateway.cases import Case, StoredFact
from gateway.cases.listing import CaseFilter, CaseLine
from gateway.cases.model import Transfer, check_case_id
from gateway.errors import InvalidInputError
from gateway.flows.crossing import record
from gateway.flows.regie import CaseCall, begin

if TYPE_CHECKING:
    from gateway.parts import NodeParts

VIEW_METHOD = "schakel.console/ViewCase"
"""The operation an audit record of a case view names."""
HISTORY_LIMIT = 1000
"""The newest records about the subject a case page reads for its history."""


@dataclass(frozen=True)
class CaseView:
    """One case as its page shows it."""

    case: Case
    facts: list[StoredFact]
    transfer: Transfer | None
    history: list[audit_pb2.AuditEntry]
    """The audit records of this case, oldest first: rounds, uitvraag decisions, deliveries."""


async def list_cases(parts: NodeParts, where: CaseFilter) -> list[CaseLine]:
    """The cases ``where`` admits, newest first."""
    return await asyncio.to_thread(parts.registry.list_cases, where)


async def case_activity(parts: NodeParts, case_id: str) -> str:
    """The processing activity case ``case_id`` was opened for, which its actions name."""
    try:
        check_case_id(case_id)
    except ValueError as exc:
        raise InvalidInputError(str(exc)) from None
    case = await asyncio.to_thread(parts.registry.get, case_id)
    return case.activity


async def view_case(parts: NodeParts, caller: Identity, case_id: str) -> CaseView:
    """The case ``case_id`` with its facts, hand-over and history; the view is audited first."""
    call = CaseCall(
        caller=caller,
        method="ViewCase",
        purpose=await case_activity(parts, case_id),
        node_id=parts.node_id,
        case_id=case_id,
    )
    action = await begin(parts, call)
    action.crossing.name = VIEW_METHOD
    await record(parts.audit, action.crossing)
    case = action.case
    facts = await asyncio.to_thread(parts.registry.facts, case.id)
    transfer = await asyncio.to_thread(parts.registry.transfer_of, case.id)
    history: list[audit_pb2.AuditEntry] = []
    if case.subject:
        newest = Filter(data_subject_id=case.subject, limit=HISTORY_LIMIT, newest_first=True)
        about = await asyncio.to_thread(query, parts.audit.engine, newest)
        history = [
            e
            for e in reversed(about)
            if not e.erased
            and e.record.case_ref.case_id == case.id
            and e.record.name != VIEW_METHOD
        ]
    return CaseView(case=case, facts=facts, transfer=transfer, history=history)


__all__ = ["VIEW_METHOD", "CaseView", "case_activity", "list_cases", "view_case"]
