"""A node's answer to FederationService.GetSignals: suppressed aggregates, nothing personal.

The answer holds only codes (themes, phases, outcomes, bottleneck tags) and
counts. Totals travel as cells whose aggregated dimensions read ``"*"`` and
whose phase is PHASE_UNSPECIFIED:

===========================  =======  ===========  =======  ==========
total                        theme    phase        outcome  bottleneck
===========================  =======  ===========  =======  ==========
per theme                    theme    UNSPECIFIED  ``*``    ``*``
per bottleneck tag           ``*``    UNSPECIFIED  ``*``    tag
grand total                  ``*``    UNSPECIFIED  ``*``    ``*``
===========================  =======  ===========  =======  ==========

Cells not listed have count 0. The collector's call is audited under the
signalling activity, with no data subject: the answer is about no one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from google.protobuf.timestamp_pb2 import Timestamp
from schakel.v1 import common_pb2, federation_pb2
from sqlalchemy.engine import Engine

from certs.identity import Identity
from gateway.cases.case_totals import CaseTotal, Dimension, suppress_case_totals
from gateway.cases.signals import count_with_cases
from gateway.cases.suppression import ALL, DEFAULT_K, SuppressedTable, TotalKind, suppress
from gateway.errors import InvalidInputError, quote
from gateway.flows import inbound
from gateway.flows.crossing import Crossing, record

if TYPE_CHECKING:
    from gateway.parts import NodeParts

SIGNALS_ACTIVITY = "zvh.signalering"
"""The processing activity of national signalling in the policy bundle."""
SIGNALS_CATEGORY = "signalen.aggregaat"
"""The category an answer releases, for the audit record."""
MAX_PERIOD = timedelta(days=3653)
"""The longest period one request may cover (ten years)."""


class SignalsRequestError(InvalidInputError):
    """A GetSignals request is malformed; the message says what is wrong."""


@dataclass(frozen=True)
class SignalsAudit:
    """What the audit record of one GetSignals crossing needs.

    The record has no data subject: the answer is about no one.
    """

    activity_id: str
    categories: tuple[str, ...]
    outcome: common_pb2.DecisionOutcome.ValueType

    def decision(self) -> common_pb2.DecisionSummary:
        """The DecisionSummary of the record (released categories only when allowed)."""
        released = self.categories if self.outcome == common_pb2.DECISION_OUTCOME_ALLOW else ()
        return common_pb2.DecisionSummary(outcome=self.outcome, released=released)


def signals_audit(answered: bool) -> SignalsAudit:
    """Audit fields for a request that was answered (ALLOW) or refused (DENY)."""
    outcome = common_pb2.DECISION_OUTCOME_ALLOW if answered else common_pb2.DECISION_OUTCOME_DENY
    return SignalsAudit(SIGNALS_ACTIVITY, (SIGNALS_CATEGORY,), outcome)


def validate_request(request: federation_pb2.SignalsRequest) -> tuple[datetime, datetime]:
    """The request's period as UTC datetimes; SignalsRequestError says what is wrong."""
    activity = request.purpose.processing_activity_id
    if activity != SIGNALS_ACTIVITY:
        raise SignalsRequestError(
            f"purpose.processing_activity_id must be {SIGNALS_ACTIVITY!r}, not {quote(activity)}"
        )
    for name in ("period_start", "period_end"):
        if not request.HasField(name):
            raise SignalsRequestError(f"{name} is required")
    start = _moment(request.period_start, "period_start")
    end = _moment(request.period_end, "period_end")
    if end <= start:
        raise SignalsRequestError(
            f"period_end ({end.isoformat()}) must be after period_start ({start.isoformat()})"
        )
    if end - start > MAX_PERIOD:
        raise SignalsRequestError(
            f"the period may cover at most {MAX_PERIOD.days} days, not {(end - start).days}"
        )
    return start, end


def _moment(stamp: Timestamp, name: str) -> datetime:
    """A request timestamp as a UTC datetime; one a datetime cannot hold is malformed."""
    try:
        return stamp.ToDatetime(tzinfo=UTC)
    except (ValueError, OverflowError):
        raise SignalsRequestError(
            f"{name} must be a valid timestamp: years 1 to 9999, nanos 0 to 999999999"
        ) from None


_DIMENSIONS = {
    Dimension.ALL: federation_pb2.CASE_DIMENSION_ALL,
    Dimension.THEME: federation_pb2.CASE_DIMENSION_THEME,
    Dimension.PHASE: federation_pb2.CASE_DIMENSION_PHASE,
    Dimension.OUTCOME: federation_pb2.CASE_DIMENSION_OUTCOME,
    Dimension.BOTTLENECK: federation_pb2.CASE_DIMENSION_BOTTLENECK,
}


def to_response(
    node_id: str, table: SuppressedTable, case_totals: Iterable[CaseTotal] = ()
) -> federation_pb2.SignalsResponse:
    """The SignalsResponse of a suppressed table, totals after the cells, then case totals."""
    response = federation_pb2.SignalsResponse(node_id=node_id, k=table.k)
    for case_total in case_totals:
        response.case_totals.add(
            dimension=_DIMENSIONS[case_total.dimension],
            key=case_total.key,
            count=case_total.count,
            suppressed=case_total.suppressed,
        )
    for cell in table.cells:
        response.cells.add(
            theme=cell.theme,
            phase=cell.phase.to_proto(),
            outcome=cell.outcome,
            bottleneck=cell.bottleneck,
            count=cell.count,
            suppressed=cell.suppressed,
        )
    for total in table.totals:
        response.cells.add(
            theme=total.key if total.kind is TotalKind.THEME else ALL,
            phase=common_pb2.PHASE_UNSPECIFIED,
            outcome=ALL,
            bottleneck=total.key if total.kind is TotalKind.BOTTLENECK else ALL,
            count=total.count,
            suppressed=total.suppressed,
        )
    return response


def build_signals_response(
    engine: Engine, node_id: str, period_start: datetime, period_end: datetime, k: int = DEFAULT_K
) -> federation_pb2.SignalsResponse:
    """Count the cases of ``[period_start, period_end)``, suppress, and build the answer.

    Raises :class:`~gateway.cases.CaseInputError` for a bad period and
    :class:`~gateway.cases.suppression.SuppressionError` for a bad ``k``.
    """
    cells, cases = count_with_cases(engine, period_start, period_end)
    table = suppress(cells, k)
    return to_response(node_id, table, suppress_case_totals(cases, table))


async def get_signals(
    request: federation_pb2.SignalsRequest, engine: Engine, node_id: str, k: int = DEFAULT_K
) -> federation_pb2.SignalsResponse:
    """Validate, then count and suppress off the event loop.

    Raises :class:`SignalsRequestError` for a bad request; nothing is read
    then. The caller's certificate is checked by the node's interceptor
    before this runs (collectors only).
    """
    start, end = validate_request(request)
    return await asyncio.to_thread(build_signals_response, engine, node_id, start, end, k)


async def answer_signals(
    parts: NodeParts, caller: Identity, request: federation_pb2.SignalsRequest
) -> federation_pb2.SignalsResponse:
    """GetSignals: the suppressed aggregates of the period, audited before they leave.

    A refused request is recorded as refused (DENY) with the signalling
    activity, whatever activity the request named.
    """
    refused = signals_audit(answered=False)
    crossing = Crossing(
        name=f"{inbound.SERVICE}/GetSignals",
        caller=caller,
        activity=refused.activity_id,
        activity_uri=inbound.activity_uri(parts.policy, refused.activity_id),
        categories=refused.categories,
        decision=refused.decision(),
    )
    response = await get_signals(request, parts.engine, parts.node_id)
    crossing.decision = signals_audit(answered=True).decision()
    await record(parts.audit, crossing)
    return response
