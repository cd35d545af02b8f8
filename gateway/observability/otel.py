"""Export the node's spans over OTLP with OpenTelemetry, when ``[tracing] otlp_endpoint`` is set.

The node's own W3C trace context (:mod:`gateway.tracing`) stays the truth:
the audit log (LDV) records its trace and span ids whether or not anything
is exported. So the exported server span of a call is not chosen by the
library: it is started here with exactly the ids the interceptor gave the
call (:func:`start_call`, through an id generator pinned to them), so an
auditor can look up a record's ``span_id`` in the tracing backend. What
the library does as well as the hand-written code is left to it: outgoing
calls to peers go through OpenTelemetry's gRPC client instrumentation
(:func:`client_interceptors`), which opens a client span and sends its
``traceparent``.

Without an endpoint every function here does nothing, and OpenTelemetry is
not even imported. One process exports for one node: the first configured
endpoint stays in force until :func:`shutdown`.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from adapters.sdk.tracecontext import TraceContext
from gateway.logging import get_logger
from gateway.observability.settings import TracingSection

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter
    from opentelemetry.trace import Span, Tracer

__all__ = ["client_interceptors", "configure", "enabled", "end_call", "shutdown", "start_call"]

log = get_logger("tracing")


@dataclass(frozen=True)
class _Exporting:
    provider: TracerProvider
    tracer: Tracer


_exporting: _Exporting | None = None
_pinned: ContextVar[tuple[int, int] | None] = ContextVar("schakel_otel_ids", default=None)
"""(trace id, span id) the next span started in this context must have."""
_call_span: ContextVar[Span | None] = ContextVar("schakel_otel_call_span", default=None)


def enabled() -> bool:
    """True while spans are exported."""
    return _exporting is not None


def _id_generator() -> Any:
    from opentelemetry.sdk.trace.id_generator import (
        IdGenerator,
        RandomIdGenerator,
    )

    class PinnedIds(IdGenerator):
        """Random ids, except for a call's span, which takes the node's own ids."""

        def __init__(self) -> None:
            self._random = RandomIdGenerator()

        def generate_span_id(self) -> int:
            pinned = _pinned.get()
            return pinned[1] if pinned is not None else self._random.generate_span_id()

        def generate_trace_id(self) -> int:
            pinned = _pinned.get()
            return pinned[0] if pinned is not None else self._random.generate_trace_id()

    return PinnedIds()


def configure(section: TracingSection, node_id: str, exporter: SpanExporter | None = None) -> None:
    """Start exporting to ``section.otlp_endpoint`` (or to ``exporter``, for tests)."""
    global _exporting  # noqa: PLW0603 - one tracer provider per process, like OpenTelemetry's own
    if _exporting is not None or not (section.otlp_endpoint or exporter is not None):
        return
    # Imported here: a node that exports nothing never loads OpenTelemetry.
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    if exporter is None:
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
            OTLPSpanExporter,
        )

        endpoint = section.otlp_endpoint
        exporter = OTLPSpanExporter(endpoint=endpoint, insecure=endpoint.startswith("http://"))
    resource = Resource.create(
        {"service.name": section.service_name, "service.instance.id": node_id}
    )
    provider = TracerProvider(resource=resource, id_generator=_id_generator())
    provider.add_span_processor(BatchSpanProcessor(exporter))
    _exporting = _Exporting(provider, provider.get_tracer("gateway"))
    log.info("tracing_export_started", endpoint=section.otlp_endpoint or "(test exporter)")


def shutdown() -> None:
    """Flush the spans still queued and stop exporting."""
    global _exporting  # noqa: PLW0603
    if _exporting is not None:
        _exporting.provider.shutdown()
        _exporting = None


def start_call(trace: TraceContext) -> None:
    """Open the exported server span of the call being handled, with ``trace``'s ids.

    The span becomes the current OpenTelemetry span of the call's task, so
    the client instrumentation makes every outgoing call its child.
    """
    if _exporting is None:
        return
    from opentelemetry import context
    from opentelemetry import trace as api

    parent = context.Context()  # never a span left in the task's context
    if trace.parent_span_id:
        caller = api.SpanContext(
            int(trace.trace_id, 16),
            int(trace.parent_span_id, 16),
            is_remote=True,
            trace_flags=api.TraceFlags(int(trace.flags, 16)),
            trace_state=api.TraceState.from_header([trace.tracestate] if trace.tracestate else []),
        )
        parent = api.set_span_in_context(api.NonRecordingSpan(caller), parent)
    token = _pinned.set((int(trace.trace_id, 16), int(trace.span_id, 16)))
    try:
        span = _exporting.tracer.start_span("call", context=parent, kind=api.SpanKind.SERVER)
    finally:
        _pinned.reset(token)
    _call_span.set(span)
    context.attach(api.set_span_in_context(span))


def end_call(method: str, status: str) -> None:
    """End the call's span, named after its ``method`` and marked with its gRPC ``status``."""
    span = _call_span.get()
    if span is None:
        return
    import grpc
    from opentelemetry import trace as api

    _call_span.set(None)
    service, _, name = method.lstrip("/").rpartition("/")
    span.update_name(method.lstrip("/"))
    span.set_attributes(
        {
            "rpc.system": "grpc",
            "rpc.service": service,
            "rpc.method": name,
            "rpc.grpc.status_code": grpc.StatusCode[status].value[0],
        }
    )
    if status != "OK":
        span.set_status(api.Status(api.StatusCode.ERROR, status))
    span.end()


def client_interceptors() -> list[Any] | None:
    """OpenTelemetry's gRPC client interceptors while exporting, else None."""
    if _exporting is None:
        return None
    from opentelemetry.instrumentation.grpc import aio_client_interceptors

    interceptors: list[Any] = aio_client_interceptors(  # type: ignore[no-untyped-call]
        tracer_provider=_exporting.provider
    )
    return interceptors
