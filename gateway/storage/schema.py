"""The node's one MetaData and the Alembic migrations that own the schema.

All tables hang off :data:`metadata`; the schema is created and changed only
by the revisions in ``gateway/storage/migrations/versions``, and every start
of a node runs them.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import Engine, MetaData, text
from sqlalchemy.exc import SQLAlchemyError

from gateway.storage.errors import StorageError, describe, shown

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
_MIGRATE_LOCK = "hashtext('schakel/migrate:' || current_schema())"
"""The advisory lock key (SQL) that lets one replica at a time migrate its schema."""


def alembic_config(engine: Engine) -> Config:
    """An Alembic configuration bound to ``engine``, with no ini file."""
    cfg = Config()
    cfg.set_main_option("script_location", str(_MIGRATIONS))
    cfg.attributes["engine"] = engine
    return cfg


def migrate(engine: Engine) -> None:
    """Bring the schema up to the newest revision (idempotent); raises :class:`StorageError`.

    On PostgreSQL the replicas of a node start together and each migrates:
    an advisory lock (scoped to the schema) lets one at a time look at the
    revision and upgrade, so the others find the schema current.
    """
    try:
        if engine.dialect.name != "postgresql":
            command.upgrade(alembic_config(engine), "head")
            return
        with engine.connect() as conn:
            conn.execute(text(f"SELECT pg_advisory_lock({_MIGRATE_LOCK})"))
            conn.commit()
            try:
                command.upgrade(alembic_config(engine), "head")
            finally:
                conn.execute(text(f"SELECT pg_advisory_unlock({_MIGRATE_LOCK})"))
                conn.commit()
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
