"""W3C trace context (https://www.w3.org/TR/trace-context/) for gRPC calls.

The node reads ``traceparent``/``tracestate`` from incoming metadata, opens a
child span for the call, exposes it through :func:`current_trace`, and sends
``traceparent`` back. Outgoing node-to-node calls carry the current span as
their parent via :func:`outgoing_metadata`. The audit log (LDV) records the
same ids, so one trace id follows a request across nodes.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable, Iterable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import grpc
from schakel.v1 import common_pb2

_TRACEPARENT = re.compile(r"^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$")
_TRACESTATE_MAX = 512
_INVALID_TRACE = "0" * 32
_INVALID_SPAN = "0" * 16


@dataclass(frozen=True)
class TraceContext:
    """The span a call runs in, with the span of the caller (if any) as parent."""

    trace_id: str
    span_id: str
    parent_span_id: str = ""
    flags: str = "01"
    tracestate: str = ""

    @property
    def traceparent(self) -> str:
        """The ``traceparent`` header naming this span."""
        return f"00-{self.trace_id}-{self.span_id}-{self.flags}"


_current: ContextVar[TraceContext | None] = ContextVar("schakel_trace", default=None)


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


def child_of(metadata: Iterable[tuple[str, str | bytes]]) -> TraceContext:
    """The span for an incoming call: a child of the caller's span, or a new trace.

    An absent or invalid ``traceparent`` starts a new trace, as the spec
    asks; ``tracestate`` is kept only alongside a valid parent.
    """
    parent: str | None = None
    state = ""
    for key, value in metadata:
        text = value.decode("ascii", "replace") if isinstance(value, bytes) else value
        if key == "traceparent":
            parent = text
        elif key == "tracestate":
            state = text
    parsed = parse_traceparent(parent) if parent is not None else None
    if parsed is None:
        return TraceContext(new_trace_id(), new_span_id())
    trace_id, parent_span, flags = parsed
    if len(state) > _TRACESTATE_MAX or not state.isprintable():
        state = ""
    return TraceContext(trace_id, new_span_id(), parent_span, flags, state)


def current_trace() -> TraceContext | None:
    """The span of the call being handled, or None outside a call."""
    return _current.get()


def set_current_trace(trace: TraceContext | None) -> None:
    """Make ``trace`` the current span for this task (used by the interceptor)."""
    _current.set(trace)


def outgoing_metadata(trace: TraceContext | None = None) -> list[tuple[str, str]]:
    """Metadata that makes an outgoing call a child of ``trace`` (default: the current span).

    Outside a call this starts a new trace, so every node-to-node call is traced.
    """
    trace = trace or current_trace()
    if trace is None:
        return [("traceparent", TraceContext(new_trace_id(), new_span_id()).traceparent)]
    metadata = [("traceparent", trace.traceparent)]
    if trace.tracestate:
        metadata.append(("tracestate", trace.tracestate))
    return metadata


def _with_trace(details: grpc.aio.ClientCallDetails) -> grpc.aio.ClientCallDetails:
    metadata = list(details.metadata or ())
    if any(key == "traceparent" for key, _ in metadata):
        return details
    return grpc.aio.ClientCallDetails(
        details.method,
        details.timeout,
        grpc.aio.Metadata(*metadata, *outgoing_metadata()),
        details.credentials,
        details.wait_for_ready,
    )


class TracePropagator(
    grpc.aio.UnaryUnaryClientInterceptor,  # type: ignore[type-arg]
    grpc.aio.UnaryStreamClientInterceptor,  # type: ignore[type-arg]
    grpc.aio.StreamUnaryClientInterceptor,  # type: ignore[type-arg]
    grpc.aio.StreamStreamClientInterceptor,  # type: ignore[type-arg]
):
    """Client interceptor: every outgoing call carries the current span as its parent.

    Installed on node-to-node channels (:func:`gateway.tls.node_channel`), so a
    servicer that calls a peer node continues its own trace without thinking
    about it. A ``traceparent`` the caller put in the metadata is kept.
    """

    async def intercept_unary_unary(
        self, continuation: Callable[..., Any], client_call_details: Any, request: Any
    ) -> Any:
        """Add the trace context to a unary call."""
        return await continuation(_with_trace(client_call_details), request)

    async def intercept_unary_stream(
        self, continuation: Callable[..., Any], client_call_details: Any, request: Any
    ) -> Any:
        """Add the trace context to a server-streaming call."""
        return await continuation(_with_trace(client_call_details), request)

    async def intercept_stream_unary(
        self, continuation: Callable[..., Any], client_call_details: Any, request_iterator: Any
    ) -> Any:
        """Add the trace context to a client-streaming call."""
        return await continuation(_with_trace(client_call_details), request_iterator)

    async def intercept_stream_stream(
        self, continuation: Callable[..., Any], client_call_details: Any, request_iterator: Any
    ) -> Any:
        """Add the trace context to a bidirectional call."""
        return await continuation(_with_trace(client_call_details), request_iterator)


def current_trace_proto() -> common_pb2.TraceContext:
    """The current span as the API's ``TraceContext`` (empty outside a traced call)."""
    trace = current_trace()
    if trace is None:
        return common_pb2.TraceContext()
    return common_pb2.TraceContext(trace_id=trace.trace_id, span_id=trace.span_id)
