"""Steps of a case at RR (accept, facts, deliveries) shared by the flow tests."""

from __future__ import annotations

import asyncio

import grpc
from schakel.v1 import (
    case_pb2,
    case_pb2_grpc,
    common_pb2,
    partner_pb2,
)

from gateway.app import Node
from tests.support.flow import Flow, MemoryPartner, Record
from tests.support.pki import RR
from tests.support.referrals import BSN, PURPOSE, refer

ANTECEDENTEN = "justitie.antecedenten"


IN_ZORG = "zorg.in_zorg"


HUISVESTING = "sociaal.huisvesting"


PARTICIPANTS = [("politie-rr", "politie"), ("ggz-rr", "ggz"), ("gemeente-rr", "gemeente")]


def fact(category: str, **fields: object) -> common_pb2.Fact:
    out = common_pb2.Fact(category=category)
    for name, value in fields.items():
        target = out.fields[name]
        if isinstance(value, bool):
            target.flag = value
        elif isinstance(value, int):
            target.number = value
        elif isinstance(value, tuple):
            target.date.CopyFrom(common_pb2.Date(year=value[0], month=value[1], day=value[2]))
        else:
            target.text = str(value)
    return out


def partners() -> dict[str, MemoryPartner]:
    return {
        "politie-rr": MemoryPartner(
            {
                BSN: Record(
                    "wijkagent@politie-rr.example",
                    [
                        fact(
                            ANTECEDENTEN,
                            aantal=4,
                            zwaarste_soort="geweld",
                            laatste_datum=(2025, 6, 14),
                            contact="wijkagent@politie-rr.example",
                        )
                    ],
                )
            }
        ),
        "ggz-rr": MemoryPartner(
            {
                BSN: Record(
                    "crisisdienst@ggz-rr.example",
                    [fact(IN_ZORG, in_zorg=True, zorgsoort="ambulant", sinds=(2024, 2, 1))],
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
        "woonstad": MemoryPartner({BSN: Record("verhuur@woonstad.example")}),
    }


async def start_partners(flow: Flow) -> dict[str, MemoryPartner]:
    sims = partners()
    types = dict(PARTICIPANTS) | {"woonstad": "woningcorporatie"}
    for org_id, sim in sims.items():
        await flow.run_partner(RR, org_id, types[org_id], sim)
    return sims


def node(flow: Flow) -> Node:
    return flow.pair.nodes[RR]


async def open_case(flow: Flow, key: str = "ref-1") -> common_pb2.CaseRef:
    answer = await refer(flow, RR, "politie-rr", "politie", key=key)
    await node(flow).parts.tasks.settle()
    return answer.case_ref


def regie(flow: Flow) -> grpc.aio.Channel:
    return flow.pair.channel(RR, flow.pair.fed.officer(RR, "procesregisseur"))


async def accept(stub: case_pb2_grpc.CaseServiceAsyncStub, ref: common_pb2.CaseRef) -> None:
    await stub.StartTriage(case_pb2.StartTriageRequest(purpose=PURPOSE, case_ref=ref))
    await stub.Triage(
        case_pb2.TriageRequest(
            purpose=PURPOSE,
            case_ref=ref,
            accept=True,
            reason_code="ontvankelijk",
            participants=[
                common_pb2.Participant(org_id=o, org_type=t, node_id=RR) for o, t in PARTICIPANTS
            ],
        )
    )


async def deliveries(
    sim: MemoryPartner, count: int, timeout: float = 5.0
) -> list[tuple[str | None, partner_pb2.PartnerTask]]:
    """Wait until ``sim`` has received ``count`` deliveries."""
    for _ in range(int(timeout / 0.02)):
        if len(sim.delivered) >= count:
            break
        await asyncio.sleep(0.02)
    return list(sim.delivered)


def categories_of(sim: MemoryPartner) -> set[str]:
    return {f.category for _, task in sim.delivered for f in task.facts}
