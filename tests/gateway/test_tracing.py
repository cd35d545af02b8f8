"""W3C trace context parsing and propagation."""

from __future__ import annotations

import pytest

import adapters.sdk as sdk
from gateway.tracing import TraceContext, child_of, outgoing_metadata, parse_traceparent

VALID = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def test_a_valid_parent_is_continued_with_a_new_span() -> None:
    trace = child_of([("traceparent", VALID), ("tracestate", "rojo=00f067aa0ba902b7")])
    assert trace.trace_id == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert trace.parent_span_id == "00f067aa0ba902b7"
    assert len(trace.span_id) == 16
    assert trace.span_id != "00f067aa0ba902b7"
    assert trace.tracestate == "rojo=00f067aa0ba902b7"
    assert trace.traceparent == f"00-{trace.trace_id}-{trace.span_id}-01"


@pytest.mark.parametrize(
    "header",
    [
        "",
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
    ],
)
def test_an_invalid_parent_starts_a_new_trace(header: str) -> None:
    assert parse_traceparent(header) is None
    trace = child_of([("traceparent", header), ("tracestate", "a=b")])
    assert trace.parent_span_id == ""
    assert trace.trace_id != "4bf92f3577b34da6a3ce929d0e0e4736"
    assert trace.tracestate == ""


def test_a_future_version_may_append_fields() -> None:
    assert parse_traceparent("01" + VALID[2:] + "-what-ever") == (
        "4bf92f3577b34da6a3ce929d0e0e4736",
        "00f067aa0ba902b7",
        "01",
    )


def test_outgoing_metadata_makes_the_next_hop_a_child() -> None:
    here = TraceContext("4bf92f3577b34da6a3ce929d0e0e4736", "1111111111111111", tracestate="x=1")
    metadata = outgoing_metadata(here)
    assert metadata == [("traceparent", here.traceparent), ("tracestate", "x=1")]
    there = child_of(metadata)
    assert (there.trace_id, there.parent_span_id) == (here.trace_id, here.span_id)


def test_outgoing_metadata_outside_a_call_starts_a_trace() -> None:
    (header,) = outgoing_metadata()
    assert header[0] == "traceparent"
    assert parse_traceparent(header[1]) is not None


def test_an_overlong_tracestate_is_dropped_and_the_parent_kept() -> None:
    trace = child_of([("traceparent", VALID), ("tracestate", "a=" + "b" * 600)])
    assert trace.parent_span_id == "00f067aa0ba902b7"
    assert trace.tracestate == ""


def test_the_sdk_and_the_node_share_one_trace_context() -> None:
    assert sdk.TraceContext is TraceContext
    attempt = sdk.TraceContext.new().child()
    there = child_of(attempt.metadata())
    assert (there.trace_id, there.parent_span_id) == (attempt.trace_id, attempt.span_id)
