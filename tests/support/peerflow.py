"""Two nodes with partners at each and a case with participants at both: peer participants."""

from __future__ import annotations

import grpc
from schakel.v1 import (
    audit_pb2,
    case_pb2,
    case_pb2_grpc,
    common_pb2,
)

from gateway.app import Node
from gateway.audit.records import decode
from gateway.audit.store import iter_leaves
from tests.support.caseflow import ANTECEDENTEN, HUISVESTING, fact
from tests.support.flow import Flow, MemoryPartner, Record
from tests.support.pki import HL, RR
from tests.support.referrals import BSN, PURPOSE, refer

PARTNERS = {
    RR: [("politie-rr", "politie"), ("gemeente-rr", "gemeente")],
    HL: [("politie-hl", "politie"), ("gemeente-hl", "gemeente"), ("ggz-hl", "ggz")],
}


PARTICIPANTS = [
    ("politie-rr", "politie", RR),
    ("gemeente-rr", "gemeente", RR),
    ("politie-hl", "politie", HL),
    ("gemeente-hl", "gemeente", HL),
]


def sections(node_id: str) -> str:
    return "".join(
        f'\n[[partners]]\nid = "{org}"\norg_type = "{kind}"\n' for org, kind in PARTNERS[node_id]
    )


def sims() -> dict[str, MemoryPartner]:
    return {
        "politie-rr": MemoryPartner(
            {
                BSN: Record(
                    "wijkagent@politie-rr.example",
                    [fact(ANTECEDENTEN, aantal=2, zwaarste_soort="geweld")],
                )
            }
        ),
        "gemeente-rr": MemoryPartner(
            {
                BSN: Record(
                    "wijkteam@gemeente-rr.example",
                    [fact(HUISVESTING, status="dakloos", huurachterstand_maanden=5)],
                )
            }
        ),
        "politie-hl": MemoryPartner(
            {
                BSN: Record(
                    "wijkagent@politie-hl.example",
                    [
                        fact(
                            ANTECEDENTEN,
                            aantal=7,
                            zwaarste_soort="vermogen",
                            laatste_datum=(2026, 3, 9),
                            intern_kenmerk="PL-HL-0042",
                        )
                    ],
                )
            }
        ),
        "gemeente-hl": MemoryPartner({BSN: Record("wijkteam@gemeente-hl.example")}),
        "ggz-hl": MemoryPartner({BSN: Record("crisisdienst@ggz-hl.example")}),
    }


def node(flow: Flow, node_id: str = RR) -> Node:
    return flow.pair.nodes[node_id]


def regie(flow: Flow) -> grpc.aio.Channel:
    return flow.pair.channel(RR, flow.pair.fed.officer(RR, "procesregisseur"))


async def open_accepted_case(
    flow: Flow, stub: case_pb2_grpc.CaseServiceAsyncStub
) -> common_pb2.CaseRef:
    answer = await refer(flow, RR, "politie-rr", "politie")
    await node(flow).parts.tasks.settle()
    await stub.StartTriage(case_pb2.StartTriageRequest(purpose=PURPOSE, case_ref=answer.case_ref))
    await stub.Triage(
        case_pb2.TriageRequest(
            purpose=PURPOSE,
            case_ref=answer.case_ref,
            accept=True,
            reason_code="ontvankelijk",
            participants=[
                common_pb2.Participant(org_id=o, org_type=t, node_id=n) for o, t, n in PARTICIPANTS
            ],
        )
    )
    return answer.case_ref


def records(flow: Flow, node_id: str) -> list[audit_pb2.AuditRecord]:
    with node(flow, node_id).parts.engine.connect() as conn:
        return [decode(d) for _, _, d in iter_leaves(conn) if d is not None]
