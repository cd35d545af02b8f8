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

The lock lives in the node's process. Replicas of a node on PostgreSQL
share the case tables, so there an action also holds a transaction-level
advisory lock keyed by the case (``pg_advisory_xact_lock``) on a
connection of its own until it ends: actions on one case wait for each
other across replicas too, and a replica that dies mid-action frees its
locks as its sessions end. The registry's guarded updates still refuse
whatever a change from elsewhere made illegal, and the uitvraag checks the
phase again before it releases anything.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy import Connection, Engine
from sqlalchemy.exc import OperationalError

from gateway.deadline import Deadline
from gateway.errors import TimedOutError, UnavailableError, quote
from gateway.storage.shared import is_shared

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

    def __init__(self, engine: Engine | None = None) -> None:
        """Locks in this process; with a PostgreSQL ``engine`` across its replicas too."""
        self._held: dict[str, _Held] = {}
        self._engine = engine if engine is not None and is_shared(engine) else None

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
                if self._engine is None:
                    yield
                else:
                    async with self._across_replicas(case_id):
                        yield
            finally:
                held.lock.release()
        finally:
            held.users -= 1
            if not held.users:
                del self._held[case_id]

    @contextlib.asynccontextmanager
    async def _across_replicas(self, case_id: str) -> AsyncIterator[None]:
        """Hold the case's advisory lock for the body, waiting as :meth:`hold` does."""
        assert self._engine is not None
        wait = Deadline.of_call(MAX_WAIT_SECONDS).left()
        conn = await asyncio.to_thread(_lock, self._engine, case_id, wait)
        try:
            yield
        finally:
            await asyncio.to_thread(_unlock, conn)


def case_key(case_id: str) -> int:
    """The signed 64-bit advisory lock key of ``case_id``."""
    digest = hashlib.blake2b(f"schakel/case:{case_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def _lock(engine: Engine, case_id: str, wait: float) -> Connection:
    """A connection in a transaction that holds the case's lock (blocking); TimedOutError
    after ``wait`` seconds, UnavailableError when the database fails."""
    conn = engine.connect()
    try:
        conn.execute(sa.text(f"SET LOCAL lock_timeout = {max(int(wait * 1000), 1)}"))
        conn.execute(sa.select(sa.func.pg_advisory_xact_lock(case_key(case_id))))
    except OperationalError as exc:
        conn.close()
        if getattr(exc.orig, "sqlstate", None) == "55P03":  # lock_not_available
            raise TimedOutError(
                f"case {quote(case_id)}: the action before this one (on another replica) did "
                "not end within this call's deadline; nothing was done, try again"
            ) from None
        raise UnavailableError(
            f"case {quote(case_id)} could not be locked: the database failed; try again"
        ) from None
    except BaseException:
        conn.close()
        raise
    return conn


def _unlock(conn: Connection) -> None:
    """End the lock's transaction, which frees the lock, and return the connection."""
    with contextlib.suppress(sa.exc.SQLAlchemyError):
        conn.commit()
    conn.close()


__all__ = ["MAX_WAIT_SECONDS", "CaseLocks", "case_key"]
