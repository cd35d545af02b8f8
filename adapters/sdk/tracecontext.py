"""W3C trace context (https://www.w3.org/TR/trace-context/), shared by the SDK and the node.

A :class:`TraceContext` names one span: a trace id, its own span id, the
span of its caller (if known), the trace flags and the vendor ``tracestate``.
A partner's logical call keeps one trace and makes each attempt a child span;
the node continues the caller's trace with a child span per call and records
the same ids in its audit log, so one trace id follows a request from the
partner across nodes. Nothing here imports the node.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass

from schakel.v1 import common_pb2

TRACEPARENT = "traceparent"
"""The gRPC metadata key of the span header (lowercase, as gRPC requires)."""
TRACESTATE = "tracestate"
"""The gRPC metadata key of the vendor state that travels with the trace."""

_TRACEPARENT = re.compile(r"^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$")
_TRACE_ID = re.compile(r"[0-9a-f]{32}")
_SPAN_ID = re.compile(r"[0-9a-f]{16}")
_FLAGS = re.compile(r"[0-9a-f]{2}")
_TRACESTATE_MAX = 512
_INVALID_TRACE = "0" * 32
_INVALID_SPAN = "0" * 16


class TraceContextError(ValueError):
    """A trace id, span id or ``traceparent`` value does not follow the W3C format."""


def new_span_id() -> str:
    """A random, non-zero 64-bit span id in lowercase hex."""
    while True:
        span = secrets.token_hex(8)
        if span != _INVALID_SPAN:
            return span


def new_trace_id() -> str:
    """A random, non-zero 128-bit trace id in lowercase hex."""
    while True:
        trace = secrets.token_hex(16)
        if trace != _INVALID_TRACE:
            return trace


def parse_traceparent(value: str) -> tuple[str, str, str] | None:
    """``(trace_id, parent_span_id, flags)`` of a valid header, else None.

    Follows the spec's rules: version ff is invalid, all-zero ids are
    invalid, version 00 must have exactly four fields, and higher versions
    may append fields.
    """
    match = _TRACEPARENT.match(value.strip())
    if not match:
        return None
    version, trace_id, span_id, flags, rest = match.groups()
    if version == "ff" or (version == "00" and rest):
        return None
    if trace_id == _INVALID_TRACE or span_id == _INVALID_SPAN:
        return None
    return trace_id, span_id, flags


def _valid_tracestate(value: str) -> str:
    # The spec lets a receiver drop a tracestate it cannot keep; an over-long or
    # unprintable one is dropped rather than passed on to the next hop.
    return value if len(value) <= _TRACESTATE_MAX and value.isprintable() else ""


def _check_span(span_id: str, name: str) -> None:
    if not _SPAN_ID.fullmatch(span_id) or span_id == _INVALID_SPAN:
        raise TraceContextError(f"{name} must be 16 lowercase hex characters, not all zero")


@dataclass(frozen=True)
class TraceContext:
    """One span: its trace, its own id, its caller's span (if any), flags and tracestate."""

    trace_id: str
    span_id: str
    parent_span_id: str = ""
    flags: str = "01"
    tracestate: str = ""

    def __post_init__(self) -> None:
        if not _TRACE_ID.fullmatch(self.trace_id) or self.trace_id == _INVALID_TRACE:
            raise TraceContextError("trace id must be 32 lowercase hex characters, not all zero")
        _check_span(self.span_id, "span id")
        if self.parent_span_id:
            _check_span(self.parent_span_id, "parent span id")
        if not _FLAGS.fullmatch(self.flags):
            raise TraceContextError("trace flags must be 2 lowercase hex characters")

    @classmethod
    def new(cls) -> TraceContext:
        """A fresh trace with a fresh span, sampled."""
        return cls(new_trace_id(), new_span_id())

    @classmethod
    def parse(cls, header: str, tracestate: str = "") -> TraceContext:
        """The span a ``traceparent`` header names, with its ``tracestate`` if that is valid.

        Raises :class:`TraceContextError` for a header that does not follow the spec.
        """
        parsed = parse_traceparent(header)
        if parsed is None:
            raise TraceContextError(
                "traceparent must look like 00-<32 hex>-<16 hex>-<2 hex>, ids not all zero"
            )
        trace_id, span_id, flags = parsed
        return cls(trace_id, span_id, flags=flags, tracestate=_valid_tracestate(tracestate))

    @classmethod
    def from_proto(cls, trace: common_pb2.TraceContext) -> TraceContext | None:
        """The trace a task or reply carries, or None when it carries none."""
        if not trace.trace_id:
            return None
        return cls(trace.trace_id, trace.span_id or new_span_id())

    def to_proto(self) -> common_pb2.TraceContext:
        """This span as the API's ``TraceContext`` message."""
        return common_pb2.TraceContext(trace_id=self.trace_id, span_id=self.span_id)

    def child(self) -> TraceContext:
        """A new span in the same trace, with this span as its parent."""
        return TraceContext(self.trace_id, new_span_id(), self.span_id, self.flags, self.tracestate)

    @property
    def sampled(self) -> bool:
        """Whether the caller recorded this trace (the flags' sampled bit)."""
        return bool(int(self.flags, 16) & 1)

    @property
    def traceparent(self) -> str:
        """The ``traceparent`` header naming this span (version 00)."""
        return f"00-{self.trace_id}-{self.span_id}-{self.flags}"

    def metadata(self) -> list[tuple[str, str]]:
        """gRPC metadata that makes the receiver's span a child of this one."""
        metadata = [(TRACEPARENT, self.traceparent)]
        if self.tracestate:
            metadata.append((TRACESTATE, self.tracestate))
        return metadata
