"""The node's Prometheus metric families and the hooks that feed them.

Each hook is called in one place of the node (the interceptor, the audit
writer, the crossing record, the transcryptor, the witness loop, the task
broker) and costs a counter increment or a histogram observation. The
families live in :data:`REGISTRY`, one per process: a process runs one node
in production, so its counts are that node's. Labels carry method names,
status names, organisation and node ids and policy rule ids, never a
pseudonym, a case id or request content.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from schakel.v1 import common_pb2

__all__ = [
    "REGISTRY",
    "audit_batch",
    "cosigned",
    "decision",
    "rpc_finished",
    "task_queued",
    "transcrypted",
]

REGISTRY = CollectorRegistry()
"""The process's metric families; the admin port serves them with the node's own gauges."""
ProcessCollector(registry=REGISTRY)
PlatformCollector(registry=REGISTRY)
GCCollector(registry=REGISTRY)

_FAST = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)

RPCS = Counter(
    "schakel_rpcs",
    "Calls the node answered, by full gRPC method and final status.",
    ["method", "status"],
    registry=REGISTRY,
)
RPC_SECONDS = Histogram(
    "schakel_rpc_duration_seconds",
    "Time from a call's arrival to its answer (a stream: to its end), by method.",
    ["method"],
    buckets=(*_FAST, 5.0, 10.0, 30.0),
    registry=REGISTRY,
)
AUDIT_APPEND_SECONDS = Histogram(
    "schakel_audit_append_seconds",
    "Time the audit writer took to make one group commit durable (COMMIT included).",
    buckets=_FAST,
    registry=REGISTRY,
)
AUDIT_BATCH = Histogram(
    "schakel_audit_batch_records",
    "Records written per audit group commit.",
    buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000),
    registry=REGISTRY,
)
COSIGNATURES = Counter(
    "schakel_checkpoint_cosignatures",
    "Cosignatures on this node's checkpoints that a witness returned and the node stored.",
    ["witness"],
    registry=REGISTRY,
)
TASKS = Counter(
    "schakel_partner_tasks_queued",
    "Tasks queued for a local partner organisation, by organisation and task kind.",
    ["org", "kind"],
    registry=REGISTRY,
)
DECISIONS = Counter(
    "schakel_policy_decisions",
    "Policy decisions recorded in the audit log, by outcome and matching rule "
    '(rule "none" when no rule matched: default deny).',
    ["outcome", "rule"],
    registry=REGISTRY,
)
TRANSCRYPTIONS = Counter(
    "schakel_transcryptions",
    'Subjects transcrypted: into the node\'s own domain ("own") or for a recipient ("recipient").',
    ["to"],
    registry=REGISTRY,
)

NO_RULE = "none"


_rpc_children: dict[tuple[str, str], tuple[Any, Any]] = {}
"""(method, status) -> its counter and histogram: ``labels()`` costs more than the update.
Bounded: the interceptor reports only the node's served methods, and statuses are few."""


def rpc_finished(method: str, status: str, seconds: float) -> None:
    """Count one answered call and observe its duration."""
    children = _rpc_children.get((method, status))
    if children is None:
        children = RPCS.labels(method, status), RPC_SECONDS.labels(method)
        _rpc_children[(method, status)] = children
    children[0].inc()
    children[1].observe(seconds)


def audit_batch(records: int, seconds: float) -> None:
    """Observe one audit group commit of ``records`` records that took ``seconds``."""
    AUDIT_BATCH.observe(records)
    AUDIT_APPEND_SECONDS.observe(seconds)


def cosigned(witness: str) -> None:
    """Count a cosignature ``witness`` returned on one of this node's checkpoints."""
    COSIGNATURES.labels(witness).inc()


def task_queued(org_id: str, kind: str) -> None:
    """Count a task (``kind`` as in the API, e.g. ``TASK_KIND_HIT_QUERY``) queued for ``org_id``."""
    TASKS.labels(org_id, kind.removeprefix("TASK_KIND_").lower()).inc()


def decision(summary: common_pb2.DecisionSummary | None) -> None:
    """Count a recorded policy decision once per matching rule (or once as ``none``)."""
    if summary is None:
        return
    if summary.outcome in common_pb2.DecisionOutcome.values():
        name = common_pb2.DecisionOutcome.Name(summary.outcome)
        outcome = name.removeprefix("DECISION_OUTCOME_").lower()
    else:
        outcome = "unspecified"
    for rule in summary.rule_ids or (NO_RULE,):
        DECISIONS.labels(outcome, rule).inc()


def transcrypted(to: str, count: int = 1) -> None:
    """Count ``count`` transcryptions (``to``: ``own`` or ``recipient``)."""
    TRANSCRYPTIONS.labels(to).inc(count)
