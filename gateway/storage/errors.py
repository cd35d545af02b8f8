"""Database problems as one error whose message a command can print as it is.

Every problem with a database URL or the database behind it surfaces as one
:class:`StorageError` whose message says what is wrong in one line, with the
URL shown without its password, so a command can print it and exit cleanly.
"""

from __future__ import annotations

from urllib.parse import unquote

import sqlalchemy as sa
from alembic.util import CommandError
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError


class StorageError(Exception):
    """The database a URL names cannot be used; the message says why, never a password.

    ``unreachable`` is true when a database server did not answer (worth a
    retry later), false when the URL or the database itself must be fixed.
    """

    def __init__(self, message: str, *, unreachable: bool = False) -> None:
        super().__init__(message)
        self.unreachable = unreachable


def shown(url: str | URL) -> str:
    """``url`` as it may be printed: the password hidden, a file opened read-write by its path."""
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        return "(not a database URL)"
    database = parsed.database or ""
    if parsed.get_backend_name() == "sqlite" and database.startswith("file:"):
        return f"sqlite:///{unquote(database.removeprefix('file:'))}"
    return parsed.render_as_string(hide_password=True)


def first_line(exc: BaseException) -> str:
    """The first line of the driver's message (later lines may echo SQL and parameters)."""
    # The driver's own message comes first; later lines may echo SQL and parameters.
    cause = exc.orig if isinstance(exc, sa.exc.DBAPIError) and exc.orig is not None else exc
    lines = str(cause).strip().splitlines()
    return lines[0] if lines else type(cause).__name__


def describe(exc: BaseException, url: str | URL) -> StorageError:
    """A :class:`StorageError` for a database error met while using ``url``."""
    reason = first_line(exc)
    where = shown(url)
    if isinstance(exc, CommandError):
        return StorageError(f"{where}: {reason} (its schema is from a newer or another program?)")
    if not isinstance(exc, sa.exc.DBAPIError):
        return StorageError(f"{where}: {type(exc).__name__}: {reason}")
    lower = reason.lower()
    if "file is not a database" in lower:
        return StorageError(f"{where}: the file is not an SQLite database")
    if "unable to open database file" in lower:
        return StorageError(f"{where}: cannot open the database file")
    if "no such table" in lower or ("does not exist" in lower and "relation" in lower):
        return StorageError(f"{where}: holds no Schakel schema; run `schakel node migrate`")
    server_down = (
        make_url(url).get_backend_name() == "postgresql"
        and isinstance(exc, sa.exc.OperationalError)
        and "fatal" not in lower
        and "invalid" not in lower
    )
    if server_down:
        return StorageError(f"{where}: cannot reach the database: {reason}", unreachable=True)
    return StorageError(f"{where}: {reason}")
