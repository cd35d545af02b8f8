"""Database engines and schema migrations for a node.

SQLite (one file, WAL) is the zero-set-up default; PostgreSQL is the
production store. All tables hang off :data:`metadata`; the schema is owned
by the Alembic revisions in ``gateway/storage/migrations/versions`` and every
start of a node runs them.

Every problem with a database URL or the database behind it surfaces as one
:class:`StorageError` whose message says what is wrong in one line, with the
URL shown without its password, so a command can print it and exit cleanly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import Engine, MetaData, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)
"""The one MetaData every table of the node is declared on."""

_MIGRATIONS = Path(__file__).parent / "migrations"


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
        raise StorageError(f"{shown(parsed)}: {_first_line(exc)}") from None
    if backend == "sqlite":
        # An existing file is opened as it is: a command that only reads
        # leaves even a file that is not (yet) a database unchanged.
        event.listen(engine, "connect", _sqlite_pragmas if create else _sqlite_session_pragmas)
    return engine


def _first_line(exc: BaseException) -> str:
    # The driver's own message comes first; later lines may echo SQL and parameters.
    cause = exc.orig if isinstance(exc, sa.exc.DBAPIError) and exc.orig is not None else exc
    lines = str(cause).strip().splitlines()
    return lines[0] if lines else type(cause).__name__


def describe(exc: BaseException, url: str | URL) -> StorageError:
    """A :class:`StorageError` for a database error met while using ``url``."""
    reason = _first_line(exc)
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


def alembic_config(engine: Engine) -> Config:
    """An Alembic configuration bound to ``engine``, with no ini file."""
    cfg = Config()
    cfg.set_main_option("script_location", str(_MIGRATIONS))
    cfg.attributes["engine"] = engine
    return cfg


def migrate(engine: Engine) -> None:
    """Bring the schema up to the newest revision (idempotent); raises :class:`StorageError`."""
    try:
        command.upgrade(alembic_config(engine), "head")
    except (SQLAlchemyError, CommandError) as exc:
        raise describe(exc, engine.url) from exc


def require_schema(engine: Engine) -> None:
    """Raise :class:`StorageError` unless the database holds the newest schema.

    For commands that only read: they neither migrate nor create anything.
    """
    head = ScriptDirectory.from_config(alembic_config(engine)).get_current_head()
    try:
        with engine.connect() as conn:
            current = MigrationContext.configure(conn).get_current_revision()
    except SQLAlchemyError as exc:
        raise describe(exc, engine.url) from exc
    if current is None:
        raise StorageError(f"{shown(engine.url)}: holds no Schakel schema")
    if current != head:
        raise StorageError(
            f"{shown(engine.url)}: the schema is at revision {current}, not {head};"
            " run `schakel node migrate` with the matching Schakel version"
        )
