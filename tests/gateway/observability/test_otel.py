"""Span export over OpenTelemetry: the exported spans carry the audit records' ids.

The node's own trace context decides the ids a call's audit (LDV) record
holds; the exported server span of that call must have the very same ids,
and a call to a peer node goes out under OpenTelemetry's client span, whose
id the peer then records as the parent of its own span.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from schakel.v1 import audit_pb2

from gateway.app import Node
from gateway.audit.records import decode
from gateway.audit.store import iter_leaves
from gateway.observability import otel
from gateway.observability.settings import TracingSection
from tests.support.flow import running_flow
from tests.support.pki import HL, RR
from tests.support.referrals import refer


@pytest.fixture
def exported() -> Iterator[InMemorySpanExporter]:
    """Spans exported by this process's nodes during the test."""
    exporter = InMemorySpanExporter()
    otel.configure(TracingSection(), "test", exporter=exporter)
    try:
        yield exporter
    finally:
        otel.shutdown()


def records(node: Node) -> list[audit_pb2.AuditRecord]:
    with node.parts.engine.connect() as conn:
        return [decode(d) for _, _, d in iter_leaves(conn) if d is not None]


def ids(span: ReadableSpan) -> tuple[str, str, str]:
    """(trace id, span id, parent span id) in the audit log's lowercase hex."""
    context = span.get_span_context()
    assert context is not None
    parent = f"{span.parent.span_id:016x}" if span.parent is not None else ""
    return f"{context.trace_id:032x}", f"{context.span_id:016x}", parent


async def test_exported_spans_carry_the_ids_of_the_audit_records(
    tmp_path: Path, exported: InMemorySpanExporter
) -> None:
    async with running_flow(tmp_path, f"sqlite:///{tmp_path / 'rr.db'}") as flow:
        answer = await refer(flow, RR, "politie-rr", "politie")
        await flow.pair.nodes[RR].parts.tasks.settle()
        rr, hl = records(flow.pair.nodes[RR]), records(flow.pair.nodes[HL])
    otel.shutdown()  # flushes the batch processor
    spans = exported.get_finished_spans()

    referral = next(r for r in rr if r.name.endswith("/SubmitReferral") and r.status == 1)
    (server,) = [s for s in spans if ids(s)[1] == referral.span_id]
    assert server.name == "schakel.v1.PartnerService/SubmitReferral"
    assert server.kind is SpanKind.SERVER
    assert ids(server)[0] == referral.trace_id
    assert answer.created

    # HL answers RR's federated hit/no-hit question inside RR's trace; its
    # record names OpenTelemetry's client span at RR as the parent.
    asked = [r for r in hl if r.trace_id == referral.trace_id]
    assert asked, "HL recorded no call in the referral's trace"
    for record in asked:
        (client,) = [s for s in spans if ids(s)[1] == record.parent_span_id]
        assert client.kind is SpanKind.CLIENT
        assert ids(client)[0] == referral.trace_id
        assert ids(client)[2] == referral.span_id  # the round runs on behalf of the referral
        (peer_server,) = [s for s in spans if ids(s)[1] == record.span_id]
        assert peer_server.kind is SpanKind.SERVER
        assert ids(peer_server)[2] == ids(client)[1]
        assert peer_server.resource.attributes["service.name"] == "schakel-node"
