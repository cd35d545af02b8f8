"""One audited crossing: the LDV record of a call, and "log before release".

Every data-bearing flow builds a :class:`Crossing` as it works, then calls
:func:`record` before it releases anything. ``record`` returns only once the
record is durably in the Merkle log; when the write fails it raises
:class:`~gateway.errors.AuditUnavailableError` and nothing leaves the node.

A crossing made during a call becomes that call's crossing: when the call is
refused (any :class:`~gateway.errors.SchakelError`), the refusal is written
as its record with status ERROR before the caller is answered
(:mod:`gateway.rpc.status`), so a refusal shows in the person's inzage.

Whatever a request carried, the record stays valid: a value that is not of
its field's form (an over-long or malformed activity, category or case id)
is recorded as :data:`UNKNOWN`, so a malformed request is still refused and
audited rather than failing the audit write.
"""

from __future__ import annotations

import re
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime

from google.protobuf.timestamp_pb2 import Timestamp
from schakel.v1 import audit_pb2, common_pb2

from certs.identity import URI_SCHEME, Identity, PeerKind
from gateway.audit.records import PSEUDONYM_TYPE, RecordError, is_bsn_shaped
from gateway.audit.store import AuditLog
from gateway.audit.store import AuditUnavailable as _StoreUnavailable
from gateway.errors import AuditUnavailableError, SchakelError
from gateway.logging import get_logger
from gateway.observability import metrics
from gateway.tracing import TraceContext, current_trace, new_span_id, new_trace_id
from policy.vocabulary import OFFICER_ROLES

log = get_logger("crossing")

UNKNOWN = "onbekend"
"""What a record holds for a request value that is not of its field's form."""

_ACTIVITY = re.compile(r"^[a-z][a-z0-9._-]{0,127}$")
_CODE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
_SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
_CASE_ID = re.compile(r"^[0-9a-f]{32}$")


_URI = re.compile(r"^schakel://[a-z]+(?:/[a-z0-9][a-z0-9-]{0,62}){1,2}$")


def _safe(value: str, form: re.Pattern[str]) -> str:
    """``value`` when it has its field's form and holds no BSN, else :data:`UNKNOWN`."""
    if not value:
        return value
    return value if form.match(value) and not is_bsn_shaped(value) else UNKNOWN


def actor_uri(identity: Identity) -> str:
    """The URI that names ``identity`` in an audit record; an officer by node and role.

    The procesregisseur and the FG of one ZVH are different actors: a
    record and an inzage report must say which of them acted, so an
    officer is named ``schakel://officer/<node-id>/<role>`` (the identity
    profile's officer URI) whatever organisation its certificate names.
    """
    if identity.kind is PeerKind.OFFICER:
        role = "+".join(sorted(identity.roles & OFFICER_ROLES))
        return f"{URI_SCHEME}officer/{identity.node_id}/{role}"
    return identity.uri


@dataclass
class CallCrossings:
    """The crossings one call made, so that its refusal can be recorded."""

    latest: Crossing | None = None
    refusal_recorded: bool = False


_call: ContextVar[CallCrossings | None] = ContextVar("schakel_call_crossings", default=None)


def begin_call() -> CallCrossings:
    """Start tracking the crossings of the call being handled (the rpc layer calls this)."""
    call = CallCrossings()
    _call.set(call)
    return call


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

    def __post_init__(self) -> None:
        call = _call.get()
        if call is not None:
            call.latest = self

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
            processing_activity_id=self.activity_uri or _safe(self.activity, _ACTIVITY) or UNKNOWN,
            foreign_operation_processor=actor_uri(self.caller),
            purpose=_safe(self.activity, _ACTIVITY),
            phase=self.phase if self.phase in common_pb2.Phase.values() else 0,  # type: ignore[arg-type]
            requester=actor_uri(self.caller),
            provider=_safe(self.provider, _URI),
            categories_asked=[_safe(c, _CODE) for c in self.categories],
        )
        if self.subject:
            record.data_subject_id = self.subject
            record.data_subject_id_type = PSEUDONYM_TYPE
        if self.decision is not None:
            record.decision.CopyFrom(self.decision)
        if self.case_ref is not None:
            record.case_ref.node_id = _safe(self.case_ref.node_id, _SLUG)
            record.case_ref.case_id = _safe(self.case_ref.case_id, _CASE_ID)
        return record


AUDIT_FAILED = (
    "the audit record of this call could not be written, so nothing was released; try again later"
)


async def append(audit: AuditLog, crossing: Crossing, *, ok: bool = True) -> int | None:
    """Append the crossing's record durably; its index, or None when the write failed.

    A caller that changed state before auditing undoes it on None, then
    raises :class:`~gateway.errors.AuditUnavailableError`; :func:`record`
    does the raising for callers that changed nothing.
    """
    try:
        index = await audit.append(crossing.record(ok=ok))
    except (_StoreUnavailable, RecordError) as exc:
        # The reason names a field or a database error class, never a value.
        log.error("audit_write_failed", method=crossing.name, reason=str(exc))
        return None
    metrics.decision(crossing.decision)
    call = _call.get()
    if not ok and call is not None:
        call.refusal_recorded = True
    return index


async def record(audit: AuditLog, crossing: Crossing, *, ok: bool = True) -> int:
    """Append the crossing's record durably and return its index in the log.

    Raises :class:`~gateway.errors.AuditUnavailableError` when the write fails, so
    that nothing is released without its record.
    """
    index = await append(audit, crossing, ok=ok)
    if index is None:
        raise AuditUnavailableError(AUDIT_FAILED)
    return index


async def record_refusal(audit: AuditLog, crossing: Crossing | None = None) -> None:
    """Write the refusal record of the call's crossing (or ``crossing``) once.

    Raises :class:`~gateway.errors.AuditUnavailableError` when it cannot be
    written: a refusal is a decision too, and the caller must not be told
    "refused" while the log misses it.
    """
    call = _call.get()
    target = crossing or (call.latest if call is not None else None)
    if target is None or (call is not None and call.refusal_recorded):
        return
    await record(audit, target, ok=False)


async def refused(audit: AuditLog, crossing: Crossing, error: SchakelError) -> SchakelError:
    """Record ``crossing`` as refused and return ``error`` for the caller to raise."""
    await record_refusal(audit, crossing)
    return error
