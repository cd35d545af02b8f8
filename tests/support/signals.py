"""Signals test fixtures: the gateway tests' PKI and nodes, a GetSignals servicer, case data.

The PKI and node fixtures are the gateway tests' own, imported rather than
copied. Nodes serve the node's stand-in FederationService with only
GetSignals overridden, the way the lead will wire it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import sqlalchemy as sa
from schakel.v1 import federation_pb2

from gateway.cases import CaseRegistry, FactVault, Participant
from gateway.flows.signalering import get_signals
from gateway.rpc.server import NodeServer, Servicers
from gateway.rpc.stand_in import UnimplementedFederationService
from tests.support.cases import SetClock, referral
from tests.support.pki import Federation, StartNode, federation, logs, start_node

__all__ = ["federation", "logs", "start_node"]

MAR = datetime(2026, 3, 1, tzinfo=UTC)
APR = datetime(2026, 4, 1, tzinfo=UTC)
MAY = datetime(2026, 5, 1, tzinfo=UTC)
GGZ = Participant("ggz-parnassia", "ggz", "zvh-haaglanden")


class SignalsFederation(UnimplementedFederationService):
    """The stand-in FederationService with GetSignals answered from the node's database."""

    def __init__(self, node_id: str, k: int = 10) -> None:
        self.node_id = node_id
        self.k = k
        self.engine: sa.Engine | None = None

    async def GetSignals(
        self, request: federation_pb2.SignalsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> federation_pb2.SignalsResponse:
        assert self.engine is not None, "start the node with start_signals_node"
        # A SignalsRequestError is answered INVALID_ARGUMENT by the node's interceptor.
        return await get_signals(request, self.engine, self.node_id, self.k)


@dataclass(frozen=True)
class Plan:
    """``count`` cases of ``theme`` opened on ``opened``, tagged, perhaps accepted and closed."""

    count: int
    theme: str
    opened: datetime
    tags: tuple[str, ...] = ()
    accepted: datetime | None = None
    closed: tuple[datetime, str] | None = None


def populate(engine: sa.Engine, plans: list[Plan]) -> list[str]:
    """Open the planned cases through the registry; returns the subjects' pseudonyms."""
    clock = SetClock(MAR)
    registry = CaseRegistry(engine, FactVault(os.urandom(32)), clock=clock)
    subjects = []
    n = 0
    for plan in plans:
        for _ in range(plan.count):
            n += 1
            clock.now = plan.opened
            ref = referral(f"key-{n}", theme=plan.theme, external_ref=f"EXT-{n:06d}")
            subjects.append(ref.subject)
            case = registry.refer(ref).case
            if plan.tags:
                registry.set_bottlenecks(case.id, plan.tags)
            if plan.accepted is not None:
                clock.now = plan.accepted
                registry.start_triage(case.id)
                registry.accept(case.id, reason_code="ok", participants=[GGZ])
            if plan.closed is not None:
                clock.now = plan.closed[0]
                registry.close(case.id, outcome=plan.closed[1], retention_days=30)
    return subjects


async def start_signals_node(
    start_node: StartNode, federation: Federation, node_id: str, k: int = 10
) -> NodeServer:
    """A real node over mTLS serving GetSignals from its own (migrated) database."""
    servicer = SignalsFederation(node_id, k)
    node: NodeServer = await start_node(
        federation.config(federation.node(node_id)), Servicers(federation=servicer)
    )
    servicer.engine = node.engine
    return node


def march_plan() -> list[Plan]:
    """A region in March: housing stalls most cases, one small cell needs hiding."""
    acc = MAR + timedelta(days=3)
    return [
        Plan(14, "complexe-casuistiek", MAR, ("huisvesting",), accepted=acc),
        Plan(11, "complexe-casuistiek", MAR, ("huisvesting", "schulden"), accepted=acc),
        Plan(3, "complexe-casuistiek", MAR, ("zorgplek",)),
        Plan(12, "complexe-casuistiek", MAR, ("zorgplek",), accepted=acc),
        Plan(20, "nazorg-ex-gedetineerden", MAR, ()),
        Plan(2, "nazorg-ex-gedetineerden", MAR, (), accepted=acc, closed=(acc, "doelen-bereikt")),
    ]
