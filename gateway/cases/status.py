"""The ``schakel.v1.CaseStatus`` views of a case: the regie's whole view, and a partner's.

The procesregisseur (CaseService replies) sees the whole case. A partner
sees what it needs to take part: the phase, theme, outcome and dates, the
regie's contact, and its own participation, never the other organisations
(that GGZ takes part is itself care information), the hits, or the
bottleneck tags (signalling of the regie, which can name care too).
"""

from __future__ import annotations

from datetime import datetime

from google.protobuf.timestamp_pb2 import Timestamp
from schakel.v1 import common_pb2, partner_pb2

from gateway.cases.model import Case, Participant


def case_status(
    case: Case, node_id: str, *, for_referrer: bool, with_hits: bool = True
) -> partner_pb2.CaseStatus:
    """The status of ``case`` at node ``node_id``; never carries facts or the subject.

    ``external_ref`` is the referrer's own reference, so it is filled in only
    when ``for_referrer`` is true (the caller is the referring organisation).
    Hits say who knows the subject: policy lets that (``bekend``) reach only
    the regie, so partner callers get the status ``with_hits=False``.
    """
    status = partner_pb2.CaseStatus(
        case_ref=common_pb2.CaseRef(node_id=node_id, case_id=case.id),
        phase=case.phase.to_proto(),
        theme=case.theme,
        participants=[
            common_pb2.Participant(org_id=p.org_id, org_type=p.org_type, node_id=p.node_id)
            for p in case.participants
        ],
        outcome=case.outcome,
        bottlenecks=list(case.bottlenecks),
        hits=[
            partner_pb2.Hit(org_id=h.org_id, node_id=h.node_id, contact_handle=h.contact_handle)
            for h in (case.hits if with_hits else ())
        ],
        external_ref=case.external_ref if for_referrer else "",
    )
    status.opened_at.CopyFrom(_timestamp(case.opened_at))
    if case.closed_at is not None:
        status.closed_at.CopyFrom(_timestamp(case.closed_at))
    return status


def partner_status(
    case: Case, node_id: str, *, viewer: Participant, referrer: bool, regie_contact: str
) -> partner_pb2.CaseStatus:
    """What partner ``viewer`` may see of ``case`` at node ``node_id``.

    ``referrer`` is true when the viewer referred the case: only then is its
    ``external_ref`` filled in. The participant list holds the viewer's own
    participation at most; hits and bottleneck tags are left out.
    """
    status = case_status(case, node_id, for_referrer=referrer, with_hits=False)
    mine = (viewer.node_id, viewer.org_id)
    own = [p for p in status.participants if (p.node_id, p.org_id) == mine]
    del status.participants[:]
    status.participants.extend(own)
    del status.bottlenecks[:]
    status.regie_contact = regie_contact
    return status


def _timestamp(value: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(value)
    return stamp
