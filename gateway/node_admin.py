"""The node's admin port, wired to its parts: what ``/readyz`` checks and ``/metrics`` reads.

``/readyz`` passes when the database answers, a signed policy bundle is in
force and the gRPC server is serving (not while the node starts or stops).
``/metrics`` serves the process's metric families
(:mod:`gateway.observability.metrics`) and the node's gauges
(:mod:`gateway.observability.gauges`): checkpoint age and size, audit log
size, open partner tasks per organisation.
"""

from __future__ import annotations

import threading

from prometheus_client import CollectorRegistry

from gateway.observability import metrics
from gateway.observability.admin import AdminServer, Check
from gateway.observability.gauges import NodeGauges
from gateway.parts import NodeParts
from gateway.rpc.server import StartupError
from gateway.storage import ping

__all__ = ["AdminPort"]


def _registry(parts: NodeParts) -> CollectorRegistry:
    def checkpoint() -> tuple[int, int] | None:
        latest = parts.checkpointer.latest()
        return None if latest is None else (latest.size, latest.signed_us)

    registry = CollectorRegistry()
    registry.register(metrics.REGISTRY)
    registry.register(
        NodeGauges(
            checkpoint=checkpoint,
            audit_size=lambda: parts.audit.head().size,
            open_tasks=parts.tasks.open_counts,
        )
    )
    return registry


def _checks(parts: NodeParts, serving: threading.Event) -> dict[str, Check]:
    def database() -> str | None:
        try:
            ping(parts.engine)
        except Exception as exc:  # any failure means "not answering"; the type says which
            return f"the database does not answer ({type(exc).__name__})"
        return None

    def policy() -> str | None:
        if parts.policy is None:
            return "no [policy] bundle is configured, so every request is denied"
        return None

    def server() -> str | None:
        return None if serving.is_set() else "the gRPC server is not serving (starting or stopping)"

    return {"database": database, "policy": policy, "serving": server}


class AdminPort:
    """The admin endpoints of one node; ``serving`` is set while its gRPC server serves."""

    def __init__(self, parts: NodeParts) -> None:
        self.config = parts.config
        self.serving = threading.Event()
        self.server = AdminServer(
            parts.config.admin.listen, _registry(parts), _checks(parts, self.serving)
        )

    @property
    def port(self) -> int:
        """The admin port actually bound."""
        return self.server.port

    def start(self) -> None:
        """Serve the endpoints; StartupError naming ``admin.listen`` when it cannot bind."""
        try:
            self.server.start()
        except OSError as exc:
            raise StartupError(
                f"{self.config.source}: admin.listen: cannot listen on "
                f"{self.config.admin.listen} ({exc.strerror or exc})"
            ) from exc

    def stop(self) -> None:
        """Stop serving the endpoints."""
        self.serving.clear()
        self.server.stop()
