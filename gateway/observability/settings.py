"""The ``[admin]`` and ``[tracing]`` sections of node.toml.

They live beside the code that uses them; :mod:`gateway.config` loads them
like every other section and reports :meth:`problems` under the section's
name, e.g. ``node.toml: tracing.otlp_endpoint: 'otel:4317' is not an http://
or https:// URL``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass


@dataclass(frozen=True)
class AdminSection:
    """``[admin]``: the plain-HTTP port with ``/metrics``, ``/healthz`` and ``/readyz``."""

    listen: str = ""
    """``host:port`` of the admin port, e.g. ``127.0.0.1:9464``; empty (the default): off.
    It has no TLS and no authentication: keep it on loopback or a cluster-internal network."""


@dataclass(frozen=True)
class TracingSection:
    """``[tracing]``: export the node's spans over OTLP (OpenTelemetry)."""

    otlp_endpoint: str = ""
    """The OTLP/gRPC collector, e.g. ``http://otel-collector:4317`` (``https://`` for TLS);
    empty (the default): no export."""
    service_name: str = "schakel-node"
    """The ``service.name`` resource attribute of the exported spans."""

    def problems(self) -> Iterator[tuple[str, str]]:
        """(key, message) for every unusable value."""
        endpoint = self.otlp_endpoint
        if endpoint and not endpoint.startswith(("http://", "https://")):
            yield "otlp_endpoint", f"{endpoint!r} is not an http:// or https:// URL"
        if not self.service_name:
            yield "service_name", "must not be empty"
