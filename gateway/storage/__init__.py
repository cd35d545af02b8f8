"""The node's storage: engines, the schema and its migrations, the UTC column type, the clock.

SQLite (one file, WAL) is the zero-set-up default; PostgreSQL is the
production store. All tables hang off :data:`metadata`; the schema is owned
by the Alembic revisions in ``gateway/storage/migrations/versions`` and every
start of a node runs them.

Every problem with a database URL or the database behind it surfaces as one
:class:`StorageError` whose message says what is wrong in one line, with the
URL shown without its password, so a command can print it and exit cleanly.
"""

from gateway.storage.clock import Clock, utc_now
from gateway.storage.engine import make_engine, ping
from gateway.storage.errors import StorageError, describe, shown
from gateway.storage.schema import alembic_config, metadata, migrate, require_schema
from gateway.storage.types import UTCDateTime

__all__ = [
    "Clock",
    "StorageError",
    "UTCDateTime",
    "alembic_config",
    "describe",
    "make_engine",
    "metadata",
    "migrate",
    "ping",
    "require_schema",
    "shown",
    "utc_now",
]
