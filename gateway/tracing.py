"""The node's side of W3C trace context: the current call's span and its propagation.

The node reads ``traceparent``/``tracestate`` from incoming metadata, opens a
child span for the call, exposes it through :func:`current_trace`, and sends
``traceparent`` back. Outgoing node-to-node calls carry the current span as
their parent via :func:`outgoing_metadata`. The audit log (LDV) records the
same ids, so one trace id follows a request across nodes. The format itself
(parsing, ids, :class:`TraceContext`) is shared with the partner SDK in
:mod:`adapters.sdk.tracecontext`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from contextvars import ContextVar
from typing import Any

import grpc
from schakel.v1 import common_pb2

from adapters.sdk.tracecontext import (
    TRACEPARENT,
    TRACESTATE,
    TraceContext,
    TraceContextError,
    new_span_id,
    new_trace_id,
    parse_traceparent,
)
from gateway.observability import otel

__all__ = [
    "TraceContext",
    "TracePropagator",
    "child_of",
    "client_interceptors",
    "current_trace",
    "current_trace_proto",
    "new_span_id",
    "new_trace_id",
    "outgoing_metadata",
    "parse_traceparent",
    "set_current_trace",
]

_current: ContextVar[TraceContext | None] = ContextVar("schakel_trace", default=None)


def child_of(metadata: Iterable[tuple[str, str | bytes]]) -> TraceContext:
    """The span for an incoming call: a child of the caller's span, or a new trace.

    An absent or invalid ``traceparent`` starts a new trace, as the spec
    asks; ``tracestate`` is kept only alongside a valid parent.
    """
    parent = state = ""
    for key, value in metadata:
        text = value.decode("ascii", "replace") if isinstance(value, bytes) else value
        if key == TRACEPARENT:
            parent = text
        elif key == TRACESTATE:
            state = text
    try:
        return TraceContext.parse(parent, state).child()
    except TraceContextError:
        return TraceContext.new()


def current_trace() -> TraceContext | None:
    """The span of the call being handled, or None outside a call."""
    return _current.get()


def set_current_trace(trace: TraceContext | None) -> None:
    """Make ``trace`` the current span for this task (the interceptor, once per call).

    While spans are exported (``[tracing] otlp_endpoint``), this also opens
    the call's exported span with the same ids.
    """
    _current.set(trace)
    if trace is not None:
        otel.start_call(trace)


def outgoing_metadata(trace: TraceContext | None = None) -> list[tuple[str, str]]:
    """Metadata that makes an outgoing call a child of ``trace`` (default: the current span).

    Outside a call this starts a new trace, so every node-to-node call is traced.
    """
    return (trace or current_trace() or TraceContext.new()).metadata()


def _with_trace(details: grpc.aio.ClientCallDetails) -> grpc.aio.ClientCallDetails:
    metadata = list(details.metadata or ())
    if any(key == TRACEPARENT for key, _ in metadata):
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


def client_interceptors() -> list[Any]:
    """The interceptors that carry the trace context on node-to-node channels.

    While spans are exported, OpenTelemetry's gRPC client instrumentation
    does it (and exports a client span per call); otherwise :class:`TracePropagator`.
    """
    return otel.client_interceptors() or [TracePropagator()]


def current_trace_proto() -> common_pb2.TraceContext:
    """The current span as the API's ``TraceContext`` (empty outside a traced call)."""
    trace = current_trace()
    return common_pb2.TraceContext() if trace is None else trace.to_proto()
