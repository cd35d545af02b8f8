"""The national collector: ask every node for its signals, in parallel, with deadlines.

Each node is reached over mTLS with the collector's certificate, through a
channel that insists on that node's own certificate. A node that is down,
refuses, misses the deadline or answers something malformed is recorded as
a :class:`Failure` with the reason; the others' answers are kept.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime

import grpc
from schakel.v1 import common_pb2, federation_pb2, federation_pb2_grpc

from gateway.cases.suppression import ALL
from gateway.collector.directory import DirectoryNode
from gateway.flows.signalering import SIGNALS_ACTIVITY
from gateway.tls import ClientCertificates, credentials_now, node_channel

_CODE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
_REASON_CHARS = 300


@dataclass(frozen=True, order=True)
class Period:
    """A half-open period ``[start, end)`` in UTC."""

    start: datetime
    end: datetime

    @property
    def label(self) -> str:
        """``2026-03`` for a whole calendar month, else ``2026-03-05/2026-04-01``."""
        if self.start.day == 1 and self.end == _next_month(self.start):
            return f"{self.start:%Y-%m}"
        return f"{self.start:%Y-%m-%d}/{self.end:%Y-%m-%d}"


def _next_month(day: datetime) -> datetime:
    first = day.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return (
        first.replace(year=first.year + 1, month=1)
        if first.month == 12
        else first.replace(month=first.month + 1)
    )


def split_periods(start: datetime, end: datetime, *, monthly: bool) -> list[Period]:
    """``[start, end)`` as one period, or cut at each first of the month."""
    if start.tzinfo is None or end.tzinfo is None:
        raise ValueError("period bounds must be timezone-aware")
    if end <= start:
        raise ValueError(f"the end ({end:%Y-%m-%d}) must be after the start ({start:%Y-%m-%d})")
    start, end = start.astimezone(UTC), end.astimezone(UTC)
    if not monthly:
        return [Period(start, end)]
    periods = []
    cursor = start
    while cursor < end:
        nxt = min(_next_month(cursor), end)
        periods.append(Period(cursor, nxt))
        cursor = nxt
    return periods


@dataclass(frozen=True)
class Failure:
    """A node that did not answer for a period, and why."""

    node: DirectoryNode
    period: Period
    reason: str


@dataclass
class Collection:
    """Everything one collection run gathered."""

    nodes: list[DirectoryNode]
    periods: list[Period]
    answers: dict[tuple[str, Period], federation_pb2.SignalsResponse] = field(default_factory=dict)
    failures: list[Failure] = field(default_factory=list)
    overall: Period | None = None
    """The whole range, asked besides the months so that a case open for several months
    counts once in the report's totals; None when the range is one period."""

    @property
    def whole(self) -> Period:
        """The period whose answers count every case once: :attr:`overall`, or the only one."""
        return self.overall or self.periods[0]

    @property
    def answered(self) -> list[DirectoryNode]:
        """Nodes that answered for at least one period, in directory order."""
        ids = {node_id for node_id, _ in self.answers}
        return [n for n in self.nodes if n.node_id in ids]

    @property
    def silent(self) -> list[DirectoryNode]:
        """Nodes that missed at least one period, in directory order."""
        ids = {f.node.node_id for f in self.failures}
        return [n for n in self.nodes if n.node_id in ids]


class MalformedAnswerError(ValueError):
    """A node's answer is not a well-formed aggregate table."""


def check_answer(node_id: str, response: federation_pb2.SignalsResponse) -> None:
    """Refuse an answer that names another node or carries anything but codes and counts.

    Codes end up in a CSV file and an HTML page, so only the code alphabet
    (and ``*`` for totals) is accepted: nothing else can reach the report.
    """
    if response.node_id != node_id:
        raise MalformedAnswerError(f"the answer names node {response.node_id!r}")
    for i, cell in enumerate(response.cells):
        for name in ("theme", "outcome", "bottleneck"):
            value = getattr(cell, name)
            if value and value != ALL and not _CODE.match(value):
                raise MalformedAnswerError(f"cells[{i}].{name} is not a code")
        if cell.phase not in common_pb2.Phase.values():
            raise MalformedAnswerError(f"cells[{i}].phase {cell.phase} is not a phase")
        if cell.suppressed and cell.count:
            raise MalformedAnswerError(f"cells[{i}] is suppressed but carries a count")
    for i, total in enumerate(response.case_totals):
        if total.key and total.key != ALL and not _CODE.match(total.key):
            raise MalformedAnswerError(f"case_totals[{i}].key is not a code")
        if total.dimension not in federation_pb2.CaseDimension.values() or not total.dimension:
            raise MalformedAnswerError(f"case_totals[{i}].dimension {total.dimension} is unknown")
        if total.suppressed and total.count:
            raise MalformedAnswerError(f"case_totals[{i}] is suppressed but carries a count")


def _reason(exc: grpc.aio.AioRpcError | MalformedAnswerError) -> str:
    if isinstance(exc, grpc.aio.AioRpcError):
        details = " ".join((exc.details() or "").split())
        text = f"{exc.code().name}: {details}" if details else exc.code().name
    else:
        text = f"malformed answer: {exc}"
    return text[:_REASON_CHARS]


async def _ask(
    stub: federation_pb2_grpc.FederationServiceAsyncStub,
    node: DirectoryNode,
    period: Period,
    timeout: float,
) -> federation_pb2.SignalsResponse:
    request = federation_pb2.SignalsRequest(
        purpose=common_pb2.Purpose(processing_activity_id=SIGNALS_ACTIVITY)
    )
    request.period_start.FromDatetime(period.start)
    request.period_end.FromDatetime(period.end)
    response: federation_pb2.SignalsResponse = await stub.GetSignals(request, timeout=timeout)
    check_answer(node.node_id, response)
    return response


async def collect(
    nodes: list[DirectoryNode],
    credentials: grpc.ChannelCredentials | ClientCertificates,
    periods: list[Period],
    *,
    timeout: float = 10.0,
    overall: Period | None = None,
) -> Collection:
    """Ask every node for every period (and ``overall``) at once; each call has ``timeout`` s.

    With :class:`~gateway.tls.ClientCertificates` every run presents the
    collector's certificate as its files are now, so a long-running
    collector follows a rotation without a restart.
    """
    result = Collection(nodes, periods, overall=overall)
    asked = [*periods, overall] if overall is not None else periods
    _generation, current = credentials_now(credentials)
    channels = [node_channel(n.address, n.node_id, current) for n in nodes]
    try:
        calls = [
            (
                node,
                period,
                _ask(federation_pb2_grpc.FederationServiceStub(ch), node, period, timeout),
            )
            for node, ch in zip(nodes, channels, strict=True)
            for period in asked
        ]
        outcomes = await asyncio.gather(*(c for _, _, c in calls), return_exceptions=True)
    finally:
        await asyncio.gather(*(ch.close(grace=None) for ch in channels))
    for (node, period, _), outcome in zip(calls, outcomes, strict=True):
        if isinstance(outcome, federation_pb2.SignalsResponse):
            result.answers[(node.node_id, period)] = outcome
        elif isinstance(outcome, grpc.aio.AioRpcError | MalformedAnswerError):
            result.failures.append(Failure(node, period, _reason(outcome)))
        else:
            raise outcome
    return result
