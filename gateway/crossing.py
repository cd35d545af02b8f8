"""One audited crossing: the LDV record of a call, and "log before release".

Every data-bearing RPC builds a :class:`Crossing` as it works, then calls
:func:`commit` before it answers. ``commit`` returns only once the record is
durably in the Merkle log; when the write fails the call is aborted with
``UNAVAILABLE`` and nothing leaves the node.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import grpc
from google.protobuf.timestamp_pb2 import Timestamp
from schakel.v1 import audit_pb2, common_pb2

from certs.identity import Identity
from gateway.audit.records import PSEUDONYM_TYPE, RecordError
from gateway.audit.store import AuditLog, AuditUnavailable
from gateway.logging import get_logger
from gateway.tracing import TraceContext, current_trace, new_span_id, new_trace_id

log = get_logger("crossing")

Context = grpc.aio.ServicerContext[Any, Any]


def _timestamp(moment: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(moment)
    return stamp


@dataclass
class Crossing:
    """What one call did, gathered while it runs; becomes one audit record per subject."""

    name: str
    """The full gRPC method, e.g. ``schakel.v1.PartnerService/SubmitReferral``."""
    caller: Identity
    activity: str = ""
    activity_uri: str = ""
    """URI of the activity in the register of processing activities, when known."""
    phase: int = common_pb2.PHASE_UNSPECIFIED
    case_ref: common_pb2.CaseRef | None = None
    subject: str = ""
    """The node-domain pseudonym (hex) of the subject, if the node knows it."""
    categories: tuple[str, ...] = ()
    decision: common_pb2.DecisionSummary | None = None
    provider: str = ""
    started: datetime = field(default_factory=lambda: datetime.now(UTC))
    trace: TraceContext | None = field(default_factory=current_trace)

    def record(self, *, ok: bool) -> audit_pb2.AuditRecord:
        """The LDV-shaped audit record of this crossing."""
        trace = self.trace or TraceContext(new_trace_id(), new_span_id())
        record = audit_pb2.AuditRecord(
            trace_id=trace.trace_id,
            span_id=trace.span_id,
            parent_span_id=trace.parent_span_id,
            name=self.name,
            start_time=_timestamp(self.started),
            end_time=_timestamp(datetime.now(UTC)),
            status=audit_pb2.SPAN_STATUS_OK if ok else audit_pb2.SPAN_STATUS_ERROR,
            processing_activity_id=self.activity_uri or self.activity,
            foreign_operation_processor=self.caller.uri,
            purpose=self.activity,
            phase=self.phase,  # type: ignore[arg-type]
            requester=self.caller.uri,
            provider=self.provider,
            categories_asked=self.categories,
        )
        if self.subject:
            record.data_subject_id = self.subject
            record.data_subject_id_type = PSEUDONYM_TYPE
        if self.decision is not None:
            record.decision.CopyFrom(self.decision)
        if self.case_ref is not None:
            record.case_ref.CopyFrom(self.case_ref)
        return record


AUDIT_FAILED = (
    "the audit record of this call could not be written, so nothing was released; try again later"
)


async def append(audit: AuditLog, crossing: Crossing, *, ok: bool = True) -> int | None:
    """Append the crossing's record durably; its index, or None when the write failed.

    A caller that changed state before auditing undoes it on None, then
    aborts with :data:`AUDIT_FAILED`; :func:`commit` does both for callers
    that changed nothing.
    """
    try:
        return await audit.append(crossing.record(ok=ok))
    except (AuditUnavailable, RecordError) as exc:
        # The reason names a field or a database error class, never a value.
        log.error("audit_write_failed", method=crossing.name, reason=str(exc))
        return None


async def commit(audit: AuditLog, crossing: Crossing, context: Context, *, ok: bool = True) -> int:
    """Append the crossing's record durably; abort the call with UNAVAILABLE if that fails.

    Returns the record's index in the log.
    """
    index = await append(audit, crossing, ok=ok)
    if index is None:
        await context.abort(grpc.StatusCode.UNAVAILABLE, AUDIT_FAILED)
    return index


async def refuse(
    audit: AuditLog,
    crossing: Crossing,
    context: Context,
    code: grpc.StatusCode,
    message: str,
) -> None:
    """Record a refused crossing (status ERROR), then abort the call with ``code``.

    A refusal is a decision too, and privacy officers must see it; if even
    the refusal cannot be written the caller gets UNAVAILABLE instead.
    """
    await commit(audit, crossing, context, ok=False)
    await context.abort(code, message)
