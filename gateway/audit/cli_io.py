"""What the ``schakel audit`` commands share: exit codes, one-line failures,
opening a database without ever creating one, and a progress bar."""

from __future__ import annotations

import sys
import time

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

OK, FINDING, USAGE = 0, 1, 2


def fail(message: str) -> int:
    """Print ``message`` as the one line of a usage problem; exit code 2."""
    print(f"schakel audit: {message}", file=sys.stderr)
    return USAGE


class ProgressBar:
    """A one-line progress bar on stderr, drawn only on a terminal."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.enabled = sys.stderr.isatty()
        self.start = time.monotonic()

    def __call__(self, done: int, total: int) -> None:
        """Draw ``done`` of ``total`` (0: unknown) with the rate so far."""
        if not self.enabled:
            return
        rate = done / max(time.monotonic() - self.start, 1e-9)
        if total:
            filled = int(30 * min(done, total) / total)
            bar = "#" * filled + "-" * (30 - filled)
            text = f"\r{self.label} [{bar}] {done:,}/{total:,} ({rate:,.0f}/s)"
        else:
            text = f"\r{self.label} {done:,} ({rate:,.0f}/s)"
        sys.stderr.write(text)
        sys.stderr.flush()

    def close(self) -> None:
        """End the bar's line."""
        if self.enabled:
            sys.stderr.write("\n")


class DatabaseError(Exception):
    """``--db`` cannot be used; the message says why in one line."""


def open_engine(url: str) -> Engine:
    """An engine on an existing, migrated database; never creates one."""
    from gateway import storage  # noqa: PLC0415 - keeps `schakel --help` light

    try:
        engine = storage.make_engine(url, create=False)
        storage.require_schema(engine)
    except storage.StorageError as exc:
        raise DatabaseError(f"--db {exc}") from None
    return engine


def db_failed(exc: SQLAlchemyError | DatabaseError, url: str) -> int:
    """Report a database problem met while a command ran; exit code 2."""
    if isinstance(exc, DatabaseError):
        return fail(str(exc))
    from gateway.storage import describe  # noqa: PLC0415

    return fail(f"--db {describe(exc, url)}")
