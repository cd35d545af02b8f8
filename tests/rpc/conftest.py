"""The transport tests share the gateway tests' throw-away PKI and loopback nodes."""

from __future__ import annotations

from tests.gateway.conftest import federation, logs, start_node

__all__ = ["federation", "logs", "start_node"]
