"""One leader among a node's replicas, chosen by a PostgreSQL advisory lock.

Work that must run once per node, not once per replica (signing
checkpoints, asking witnesses, the retention purge), runs on the replica
that holds a session-level advisory lock on a connection of its own. Every
other replica tries to take the lock each :data:`POLL_SECONDS`; the leader
checks its connection as often. When the leader dies its session ends, the
server frees the lock, and the next try of another replica takes it: the
failover takes :data:`POLL_SECONDS` plus the time PostgreSQL needs to see
the connection gone (at once for a killed process on a live host). A leader
whose connection fails stops leading at once, before another can take over.

On SQLite the node is one process (:mod:`gateway.storage.exclusive`), so it
always leads.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Awaitable, Callable
from typing import Any

import psycopg
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from gateway.logging import get_logger
from gateway.storage.shared import dedicated_connection, is_shared, scoped_key

log = get_logger("storage.leader")

POLL_SECONDS = 1.0
"""How often a replica tries to become leader, and the leader checks it still is."""
LOCK_NAME = "schakel/leader"


class Leadership:
    """Whether this replica leads; :meth:`run` keeps it current, :meth:`lead` runs work
    while it lasts."""

    def __init__(self, engine: Engine, *, poll_seconds: float = POLL_SECONDS) -> None:
        self._engine = engine
        self._poll_seconds = poll_seconds
        self._conn: psycopg.Connection[Any] | None = None
        self._key: int | None = None
        self._leading = asyncio.Event()
        self._following = asyncio.Event()
        self._following.set()

    @property
    def leading(self) -> bool:
        """True while this replica leads."""
        return self._leading.is_set()

    async def run(self, stop: asyncio.Event) -> None:
        """Try for, and then hold, the leadership until ``stop``; then give it up."""
        if not is_shared(self._engine):
            self._set(True)
            await stop.wait()
            self._set(False)
            return
        try:
            while not stop.is_set():
                self._set(await asyncio.to_thread(self._poll))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self._poll_seconds)
        finally:
            self._set(False)
            await asyncio.to_thread(self._close)

    async def lead(
        self, work: Callable[[asyncio.Event], Awaitable[None]], stop: asyncio.Event
    ) -> None:
        """Run ``work(ended)`` each time this replica becomes leader, until ``stop``.

        ``ended`` is set when the leadership is lost or ``stop`` is set; the
        work must return soon after. An exception from ``work`` ends this too.
        """
        while not stop.is_set():
            await _first(stop.wait(), self._leading.wait())
            if stop.is_set():
                return
            ended = asyncio.Event()
            watcher = asyncio.create_task(self._watch(stop, ended))
            try:
                await work(ended)
                await ended.wait()
            finally:
                watcher.cancel()

    async def _watch(self, stop: asyncio.Event, ended: asyncio.Event) -> None:
        await _first(stop.wait(), self._following.wait())
        ended.set()

    def _set(self, leading: bool) -> None:
        if leading == self._leading.is_set():
            return
        if leading:
            self._following.clear()
            self._leading.set()
            log.info("leadership_acquired", pid=os.getpid())
        else:
            self._leading.clear()
            self._following.set()
            log.info("leadership_released", pid=os.getpid())

    def _poll(self) -> bool:
        """Take or keep the lock (blocking); False when not held or the database failed."""
        try:
            if self._conn is None:
                self._conn = dedicated_connection(self._engine)
                self._key = scoped_key(self._conn, LOCK_NAME)
            if self._leading.is_set():
                self._conn.execute("SELECT 1")
                return True
            row = self._conn.execute("SELECT pg_try_advisory_lock(%s)", (self._key,)).fetchone()
            return bool(row is not None and row[0])
        except (psycopg.Error, SQLAlchemyError) as exc:
            log.warning("leadership_check_failed", error=type(exc).__name__)
            self._close()
            return False

    def _close(self) -> None:
        """Close the lock's connection, which frees the lock if held."""
        if self._conn is not None:
            with contextlib.suppress(psycopg.Error):
                self._conn.close()
            self._conn = None


def others_lead(engine: Engine) -> bool:
    """True when another replica holds the leadership now (blocking; False on SQLite)."""
    if not is_shared(engine):
        return False
    conn = dedicated_connection(engine)
    try:
        key = scoped_key(conn, LOCK_NAME)
        row = conn.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()
        return not (row is not None and row[0])
    finally:
        conn.close()  # and with it the lock, if this call took it


async def _first(*waits: Awaitable[Any]) -> None:
    """Return when the first of ``waits`` completes; the rest are cancelled."""
    tasks = [asyncio.ensure_future(w) for w in waits]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()


__all__ = ["LOCK_NAME", "POLL_SECONDS", "Leadership", "others_lead"]
