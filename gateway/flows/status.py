"""A partner asks for the status of a case it referred or takes part in.

The answer is the partner's view (:func:`gateway.cases.status.partner_status`):
the phase, the regie's contact and the caller's own participation; never
facts, the subject, hits, or the other organisations. A case the caller does
not take part in is answered exactly like a missing one, so a case id never
reveals that a case exists. The look-up is processing about the person, so
its crossing carries the case's subject as soon as the case is found: a
refused look-up of an existing case is in that person's inzage too.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Iterable
from typing import TYPE_CHECKING

from schakel.v1 import partner_pb2

from certs.identity import Identity, PeerKind
from gateway.cases import Case, CaseNotFoundError, Participant
from gateway.cases.model import check_id
from gateway.cases.status import partner_status
from gateway.errors import DeniedError, InvalidInputError, NotFoundError, quote
from gateway.flows.crossing import Crossing, record
from gateway.flows.partner_request import activity_of
from policy.vocabulary import REGIE

if TYPE_CHECKING:
    from gateway.parts import NodeParts

METHOD = "schakel.v1.PartnerService/GetCaseStatus"
_CASE_ID = re.compile(r"^[0-9a-f]{32}$")


async def case_status_for(
    parts: NodeParts, caller: Identity, request: partner_pb2.GetCaseStatusRequest
) -> partner_pb2.CaseStatus:
    """The status of the case ``request`` names, as ``caller`` may see it."""
    case_ref = request.case_ref
    crossing = Crossing(
        name=METHOD,
        caller=caller,
        activity=request.purpose.processing_activity_id,
        case_ref=case_ref,
    )
    if not case_ref.case_id:
        raise InvalidInputError("case_ref.case_id is required")
    if not _CASE_ID.match(case_ref.case_id):
        raise InvalidInputError("case_ref.case_id must be 32 lowercase hex characters")
    check_id(case_ref.node_id, "case_ref.node_id")
    case: Case | None = None
    if case_ref.node_id == parts.node_id:
        with contextlib.suppress(CaseNotFoundError):
            case = await asyncio.to_thread(parts.registry.get, case_ref.case_id)
    if case is not None:
        crossing.subject = case.subject
        crossing.phase = case.phase.to_proto()
    # Checked whether or not the case exists, so its answer reveals nothing.
    activity = activity_of(parts, request.purpose)
    crossing.activity_uri = activity.uri
    if case is None or not (
        _referred(case, caller, parts.node_id) or _takes_part(case.participants, caller)
    ):
        # Same answer as a missing case: a case id must not reveal that a case exists.
        raise NotFoundError(f"no case {quote(case_ref.case_id)} at this node that you take part in")
    if case.activity != activity.id:
        raise DeniedError(
            f"case {case.id} was opened for another processing activity than {activity.id}"
        )
    await record(parts.audit, crossing)
    return partner_status(
        case,
        parts.node_id,
        viewer=Participant(caller.org_id, caller.org_type, caller.node_id),
        referrer=_referred(case, caller, parts.node_id),
        regie_contact=parts.config.cases.contact_handle,
    )


def _referred(case: Case, caller: Identity, node_id: str) -> bool:
    """The caller, a partner of this node ``node_id``, referred ``case``: kind, node,
    organisation and type.

    A case a peer node handed over names that node as its referrer, of type
    :data:`~policy.vocabulary.REGIE`: no partner certificate is that node,
    whatever its organisation id.
    """
    return (
        caller.kind is PeerKind.PARTNER
        and caller.node_id == node_id
        and case.referrer_org_type != REGIE
        and (case.referrer_org_id, case.referrer_org_type) == (caller.org_id, caller.org_type)
    )


def _takes_part(participants: Iterable[Participant], caller: Identity) -> bool:
    """The caller, a partner, is a participant: node, organisation and type."""
    return caller.kind is PeerKind.PARTNER and any(
        (p.node_id, p.org_id, p.org_type) == (caller.node_id, caller.org_id, caller.org_type)
        for p in participants
    )


__all__ = ["METHOD", "case_status_for"]
