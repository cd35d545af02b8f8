"""What the node records when a call ends: its metrics and the end of its exported span.

The interceptor (:mod:`gateway.rpc.auth`) calls :func:`finished` once per
call, after its log line.
"""

from __future__ import annotations

from gateway.observability import metrics, otel

__all__ = ["finished"]


def finished(method: str, status: str, seconds: float) -> None:
    """Count the call by ``method`` and ``status``, observe its ``seconds``, end its span."""
    metrics.rpc_finished(method, status, seconds)
    otel.end_call(method, status)
