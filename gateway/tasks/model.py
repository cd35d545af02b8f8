"""What the task broker hands around: a sent task, an answer, and the ways a
partner's call can fail to fit an open task."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from schakel.v1 import partner_pb2

from gateway.errors import DeniedError, InvalidInputError, NotFoundError, SchakelError


@dataclass(frozen=True)
class Withheld:
    """The partner answered, but policy kept the answer from the asker."""

    rule_ids: tuple[str, ...] = ()


Answer = partner_pb2.AnswerHitRequest | partner_pb2.AnswerFactsRequest | Withheld


class TaskError(SchakelError):
    """A call that does not fit an open task of the caller."""


class TaskNotFoundError(TaskError, NotFoundError):
    """No open task has the id: unknown, already settled, or past its deadline."""


class TaskNotYoursError(TaskError, DeniedError):
    """The task was sent to another organisation."""


class TaskKindError(TaskError, InvalidInputError):
    """The call does not settle tasks of this kind."""


@dataclass(eq=False)
class PendingTask:
    """A sent task and what the node needs to judge and audit its answer."""

    task: partner_pb2.PartnerTask
    org_id: str
    subject: str
    """The node-domain pseudonym (hex) of the task's subject, for the audit record."""
    expires: float
    """``time.monotonic()`` after which the task lapses."""
    answer: asyncio.Future[Answer] | None
    """Resolved by the answer; None for tasks nobody answers (FACT_DELIVERY)."""
    attempts: int = 0
    """How often a stream has taken the task."""
    created: float = field(default_factory=time.time)
    """When the task was made (epoch seconds), to send redeliveries oldest first."""
