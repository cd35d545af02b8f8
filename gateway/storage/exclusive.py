"""One node process per SQLite file.

SQLite serves one node process: its task streams, case locks and leader
live in that process, so a second process on the same file would take
tasks it cannot deliver and sign checkpoints beside the first. A node
therefore holds an exclusive ``flock`` on a lock file beside the database
(``node.db`` -> ``node.db.lock``) while it runs; the kernel drops it when
the process ends, however it ends. Read-only commands (``schakel audit``)
take no lock and keep working beside a running node.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

from sqlalchemy.engine import make_url

from gateway.storage.errors import StorageError


class DatabaseInUseError(StorageError):
    """Another node process runs on the same SQLite file."""


class ProcessLock:
    """An exclusive lock on a SQLite database's lock file, held until :meth:`release`."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd: int | None = fd

    def release(self) -> None:
        """Give the lock up (the file stays; it holds only the last holder's pid)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def lock_path(database: Path) -> Path:
    """The lock file beside ``database``."""
    return database.with_name(database.name + ".lock")


def hold_sqlite(url: str) -> ProcessLock | None:
    """Lock the SQLite file ``url`` names for this process; None for PostgreSQL or an
    in-memory database. Raises :class:`DatabaseInUseError` when another process holds it."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database:
        return None
    if parsed.database == ":memory:" or parsed.query.get("uri"):
        return None
    path = lock_path(Path(parsed.database))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError:
        return None  # opening the database itself fails next and says why
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = ""
        with contextlib.suppress(OSError, ValueError):
            holder = f" (pid {int(os.pread(fd, 32, 0).decode().strip())})"
        os.close(fd)
        raise DatabaseInUseError(
            f"{parsed.database} is in use by another node process{holder}: a SQLite database "
            "serves one process; stop that one first, or run replicas on PostgreSQL"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return ProcessLock(path, fd)


__all__ = ["DatabaseInUseError", "ProcessLock", "hold_sqlite", "lock_path"]
