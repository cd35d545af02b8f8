"""One case, one step at a time: the procesregisseur's actions on one case wait for each other.

The registry decides every change of a case in its own guarded transaction,
but a step such as an uitvraag reads the case, asks the participants,
audits the releases and stores the facts over seconds. Were two steps on one
case to interleave, a closure could land between an uitvraag's releases and
its deliveries. So every action on a case holds that case's lock from
reading the case until its answer: a closure that comes during an uitvraag
waits for it, then finds the case as the uitvraag left it, and a step that
waited finds its case as the step before left it (and is refused when that
phase no longer allows it).

The lock lives in the node's process, the one writer of its case tables;
the registry's guarded updates still refuse whatever a change from outside
the process made illegal, and the uitvraag checks the phase again before it
releases anything.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from gateway.deadline import Deadline
from gateway.errors import TimedOutError, quote

MAX_WAIT_SECONDS = 40.0
"""How long an action waits for the one before it when its caller set no deadline:
longer than the longest step (an uitvraag of 30 s and its deliveries)."""


@dataclass
class _Held:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    users: int = 0
    """Actions holding or waiting for the lock; the entry goes when none are left."""


class CaseLocks:
    """A lock per case id, made when an action on the case comes and dropped after the last."""

    def __init__(self) -> None:
        self._held: dict[str, _Held] = {}

    @contextlib.asynccontextmanager
    async def hold(self, case_id: str) -> AsyncIterator[None]:
        """Hold case ``case_id`` for the body, after the actions before it.

        Waits at most until the call's deadline (or :data:`MAX_WAIT_SECONDS`),
        then raises TimedOutError; nothing has been done then.
        """
        held = self._held.setdefault(case_id, _Held())
        held.users += 1
        try:
            wait = Deadline.of_call(MAX_WAIT_SECONDS).left()
            try:
                if held.lock.locked():
                    await asyncio.wait_for(held.lock.acquire(), wait)
                else:
                    await held.lock.acquire()  # free: taken at once, whatever the deadline
            except TimeoutError:
                raise TimedOutError(
                    f"case {quote(case_id)}: the action before this one did not end within "
                    "this call's deadline; nothing was done, try again"
                ) from None
            try:
                yield
            finally:
                held.lock.release()
        finally:
            held.users -= 1
            if not held.users:
                del self._held[case_id]


__all__ = ["MAX_WAIT_SECONDS", "CaseLocks"]
