"""The node's gauges, read from its parts at each scrape.

Counters are fed by hooks as things happen (:mod:`~gateway.observability.metrics`);
what is a state rather than an event (how old the newest checkpoint is, how
large the log, how many tasks wait for each partner) is read when Prometheus
asks, from the database, so every process of a node reports the same truth.
The readers are plain callables, so this module knows none of the node's
classes; a reader that fails leaves its family out of that one scrape.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from gateway.logging import get_logger

__all__ = ["NodeGauges"]

log = get_logger("admin")


@dataclass(frozen=True)
class NodeGauges(Collector):
    """A Prometheus collector over the node's readers."""

    checkpoint: Callable[[], tuple[int, int] | None]
    """(size, signed at in epoch microseconds) of the newest checkpoint; None before the first."""
    audit_size: Callable[[], int]
    """The audit log's size (its head)."""
    open_tasks: Callable[[], Mapping[tuple[str, str], int]]
    """Open partner tasks by (organisation id, state: queued or sent)."""
    clock: Callable[[], float] = field(default=time.time)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        """The gauges as they are now."""
        for name, read in (
            ("checkpoint", self._checkpoint),
            ("audit_size", self._audit_size),
            ("open_tasks", self._open_tasks),
        ):
            try:
                yield from read()
            except Exception as exc:  # the database may be down: report what can be read
                log.warning("metrics_read_failed", gauge=name, error=type(exc).__name__)

    def _checkpoint(self) -> list[GaugeMetricFamily]:
        latest = self.checkpoint()
        if latest is None:
            return []
        size, signed_us = latest
        age = GaugeMetricFamily(
            "schakel_checkpoint_age_seconds",
            "Seconds since the newest checkpoint of the audit log was signed.",
            value=max(self.clock() - signed_us / 1e6, 0.0),
        )
        signed = GaugeMetricFamily(
            "schakel_checkpoint_size", "Records covered by the newest signed checkpoint.", size
        )
        return [age, signed]

    def _audit_size(self) -> list[GaugeMetricFamily]:
        return [
            GaugeMetricFamily(
                "schakel_audit_records", "Records in the audit log (its head).", self.audit_size()
            )
        ]

    def _open_tasks(self) -> list[GaugeMetricFamily]:
        depth = GaugeMetricFamily(
            "schakel_partner_task_queue_depth",
            "Open tasks of each local partner organisation: queued (not yet taken by its "
            "task stream) or sent (taken, not yet answered or acknowledged).",
            labels=["org", "state"],
        )
        for (org, state), count in sorted(self.open_tasks().items()):
            depth.add_metric([org, state], count)
        return [depth]
