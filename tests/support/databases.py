"""The test databases: SQLite files, and schemas on the PostgreSQL test server.

PostgreSQL tests skip, saying why, only when no server answers at
``SCHAKEL_TEST_PG`` (default 127.0.0.1:5432, database ``test``).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

PG_ADMIN_URL = os.environ.get("SCHAKEL_TEST_PG", "postgresql+psycopg://127.0.0.1:5432/test")


def pg_reachable() -> str | None:
    """None when PostgreSQL answers, else why not."""
    try:
        engine = sa.create_engine(PG_ADMIN_URL, connect_args={"connect_timeout": 2})
        with engine.connect() as conn:
            conn.execute(sa.text("select 1"))
        engine.dispose()
    except Exception as exc:  # any failure means "no server here"
        return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    return None


PG_PROBLEM = pg_reachable()


def pg_schema_url() -> Iterator[str]:
    """A URL bound to a fresh schema on the test server; dropped afterwards."""
    if PG_PROBLEM is not None:
        pytest.skip(f"PostgreSQL at {PG_ADMIN_URL} did not answer ({PG_PROBLEM}); SQLite only")
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(PG_ADMIN_URL)
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield f"{PG_ADMIN_URL}?options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()
