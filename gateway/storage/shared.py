"""What replicas of one node share on PostgreSQL: names scoped to the node's schema,
dedicated connections, and wake-ups by LISTEN/NOTIFY.

Several replicas of a node serve from one PostgreSQL schema. Advisory lock
keys and notification channels are database-wide, so both are derived from
the schema (``current_schema()``): two nodes in two schemas of one database
never take each other's locks or wake each other's streams.

A :class:`Listener` holds one connection of its own outside the pool (a
LISTEN lasts as long as its session) and hands each notification to a
callback from its thread. Notifications sent while it was reconnecting are
lost, so it calls ``on_reconnect`` after every (re)connection: the owner
then looks at its tables again, which stay the truth.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Sequence
from typing import Any

import psycopg
from psycopg import sql
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from gateway.logging import get_logger

log = get_logger("storage.shared")

RECONNECT_SECONDS = 1.0
"""Pause before a listener or leader connects again after losing its connection."""


def is_shared(engine: Engine) -> bool:
    """True when replicas may share ``engine``'s database (PostgreSQL)."""
    return engine.dialect.name == "postgresql"


def dedicated_connection(engine: Engine) -> psycopg.Connection[Any]:
    """A psycopg connection of its own (outside the pool), in autocommit mode."""
    raw = engine.raw_connection()
    conn: psycopg.Connection[Any] = raw.driver_connection  # type: ignore[assignment]
    raw.detach()
    conn.rollback()
    conn.autocommit = True
    return conn


def _schema(conn: psycopg.Connection[Any]) -> str:
    row = conn.execute("SELECT current_schema()").fetchone()
    return str(row[0]) if row is not None else ""


def scoped_channel(conn: psycopg.Connection[Any], base: str) -> str:
    """The notification channel ``base`` of the schema ``conn`` works in."""
    digest = hashlib.blake2b(_schema(conn).encode(), digest_size=6).hexdigest()
    return f"{base}_{digest}"


def scoped_key(conn: psycopg.Connection[Any], base: str) -> int:
    """A signed 64-bit advisory lock key for ``base`` in the schema ``conn`` works in."""
    digest = hashlib.blake2b(f"{base}:{_schema(conn)}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def channel_of(engine: Engine, base: str) -> str:
    """:func:`scoped_channel` over a pooled connection of ``engine`` (blocking)."""
    with engine.connect() as conn:
        raw = conn.connection.driver_connection
        assert isinstance(raw, psycopg.Connection)
        return scoped_channel(raw, base)


class Listener:
    """LISTEN on ``channels`` in a thread; ``on_notify(channel, payload)`` for each
    notification and ``on_reconnect()`` after each (re)connection, both from that thread."""

    def __init__(
        self,
        engine: Engine,
        channels: Sequence[str],
        on_notify: Callable[[str, str], None],
        on_reconnect: Callable[[], None],
    ) -> None:
        self._engine = engine
        self._channels = list(channels)
        self._on_notify = on_notify
        self._on_reconnect = on_reconnect
        self._stop = threading.Event()
        self._listening = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start listening; returns once the first LISTEN is in place (or failed)."""
        self._thread = threading.Thread(target=self._run, name="pg-listener", daemon=True)
        self._thread.start()
        self._listening.wait(timeout=10)

    def stop(self) -> None:
        """Stop listening and close the connection (within about half a second)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                conn = dedicated_connection(self._engine)
            except (psycopg.Error, SQLAlchemyError) as exc:
                log.warning("listener_connect_failed", error=type(exc).__name__)
                self._listening.set()
                self._stop.wait(RECONNECT_SECONDS)
                continue
            try:
                for channel in self._channels:
                    conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
                self._listening.set()
                self._on_reconnect()
                while not self._stop.is_set():
                    for note in conn.notifies(timeout=0.5):
                        self._on_notify(note.channel, note.payload)
            except psycopg.Error as exc:
                log.warning("listener_connection_lost", error=type(exc).__name__)
                self._stop.wait(RECONNECT_SECONDS)
            finally:
                conn.close()


__all__ = [
    "Listener",
    "channel_of",
    "dedicated_connection",
    "is_shared",
    "scoped_channel",
    "scoped_key",
]
