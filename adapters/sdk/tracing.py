"""W3C trace context (https://www.w3.org/TR/trace-context/) for partner calls.

A logical call keeps one trace id; each attempt (a retry included) is a new
span, so the node's audit log shows every attempt under the same trace.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass

from schakel.v1 import common_pb2

TRACEPARENT = "traceparent"
"""The gRPC metadata key (lowercase, as gRPC requires)."""
_HEADER = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
_ZERO_TRACE = "0" * 32
_ZERO_SPAN = "0" * 16


class TraceContextError(ValueError):
    """A traceparent value does not follow the W3C format."""


@dataclass(frozen=True)
class TraceParent:
    """One W3C ``traceparent``: version 00, trace id, parent span id, flags."""

    trace_id: str
    span_id: str
    sampled: bool = True

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[0-9a-f]{32}", self.trace_id) or self.trace_id == _ZERO_TRACE:
            raise TraceContextError("trace id must be 32 lowercase hex characters, not all zero")
        if not re.fullmatch(r"[0-9a-f]{16}", self.span_id) or self.span_id == _ZERO_SPAN:
            raise TraceContextError("span id must be 16 lowercase hex characters, not all zero")

    @classmethod
    def new(cls) -> TraceParent:
        """A fresh trace with a fresh span."""
        return cls(secrets.token_hex(16), secrets.token_hex(8))

    @classmethod
    def parse(cls, header: str) -> TraceParent:
        """Parse a ``traceparent`` header value."""
        match = _HEADER.fullmatch(header.strip())
        if not match:
            raise TraceContextError("traceparent must look like 00-<32 hex>-<16 hex>-<2 hex>")
        return cls(match.group(1), match.group(2), bool(int(match.group(3), 16) & 1))

    @classmethod
    def from_proto(cls, trace: common_pb2.TraceContext) -> TraceParent | None:
        """The trace a task or response carries, or None when it carries none."""
        if not trace.trace_id:
            return None
        return cls(trace.trace_id, trace.span_id or secrets.token_hex(8))

    def child(self) -> TraceParent:
        """A new span in the same trace, for one attempt of a call."""
        return TraceParent(self.trace_id, secrets.token_hex(8), self.sampled)

    def header(self) -> str:
        """The ``traceparent`` header value."""
        return f"00-{self.trace_id}-{self.span_id}-{'01' if self.sampled else '00'}"
