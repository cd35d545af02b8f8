"""The node's storage: engines, the schema and its migrations, the UTC column type, the clock.

SQLite (one file, WAL) is the zero-set-up default; PostgreSQL is the
production store. All tables hang off :data:`metadata`; the schema is owned
by the Alembic revisions in ``gateway/storage/migrations/versions`` and every
start of a node runs them.
"""

from gateway.storage.clock import Clock, utc_now
from gateway.storage.engine import make_engine
from gateway.storage.schema import alembic_config, metadata, migrate
from gateway.storage.types import UTCDateTime

__all__ = [
    "Clock",
    "UTCDateTime",
    "alembic_config",
    "make_engine",
    "metadata",
    "migrate",
    "utc_now",
]
