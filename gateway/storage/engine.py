"""Database engines: SQLite (one file, WAL) by default, PostgreSQL in production."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import quote

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError

from gateway.storage.errors import StorageError, first_line, shown


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    # WAL lets readers (audit queries) run beside the writer; the mode is
    # kept in the file, so a node's database stays in it.
    dbapi_conn.execute("PRAGMA journal_mode=WAL")
    _sqlite_session_pragmas(dbapi_conn, _record)


def _sqlite_session_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    # synchronous=FULL keeps "committed" meaning "on disk", which
    # log-before-release relies on.
    cur.execute("PRAGMA synchronous=FULL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.close()


def _sqlite_url(parsed: URL, create: bool) -> URL:
    """The URL to open, after making (``create``) or requiring the database file."""
    if not parsed.database or parsed.database == ":memory:" or parsed.query.get("uri"):
        return parsed
    path = Path(parsed.database)
    if path.is_dir():
        raise StorageError(f"{shown(parsed)}: {path} is a directory, not a database file")
    if create:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(
                f"{shown(parsed)}: cannot create the directory {path.parent}: {exc.strerror}"
            ) from None
        return parsed
    if not path.is_file():
        raise StorageError(f"{shown(parsed)}: no database file at {path}")
    # mode=rw: SQLite itself refuses to create the file should it vanish now.
    absolute = quote(str(path.resolve()))
    return parsed.set(database=f"file:{absolute}", query={"mode": "rw", "uri": "true"})


def make_engine(url: str, *, create: bool = True, **kwargs: Any) -> Engine:
    """Create an engine for ``url`` (``sqlite:///path`` or ``postgresql+psycopg://...``).

    With ``create`` false a SQLite file must already exist and is never made
    (read commands pass it, so a mistyped path fails instead of answering
    from a new empty database). Raises :class:`StorageError`.
    """
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        raise StorageError(
            "not a database URL: use sqlite:///path or postgresql+psycopg://host/db"
        ) from None
    backend = parsed.get_backend_name()
    if backend not in ("sqlite", "postgresql"):
        raise StorageError(
            f"{shown(parsed)}: unsupported database {backend!r}: use sqlite or postgresql"
        )
    if backend == "sqlite":
        parsed = _sqlite_url(parsed, create)
    else:
        kwargs.setdefault("pool_pre_ping", True)
    try:
        engine = create_engine(parsed, **kwargs)
    except (ArgumentError, NoSuchModuleError, ImportError, TypeError) as exc:
        raise StorageError(f"{shown(parsed)}: {first_line(exc)}") from None
    if backend == "sqlite":
        # An existing file is opened as it is: a command that only reads
        # leaves even a file that is not (yet) a database unchanged.
        event.listen(engine, "connect", _sqlite_pragmas if create else _sqlite_session_pragmas)
    return engine


def ping(engine: Engine) -> None:
    """Run a trivial query; SQLAlchemyError when the database does not answer."""
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))
