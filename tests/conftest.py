"""Shared fixtures. Storage tests take ``db_url`` and so run on SQLite and PostgreSQL."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
import structlog

# Before any test module imports grpc: the package sets grpc's TLS 1.3 cipher suites.
import gateway  # noqa: F401

PG_ADMIN_URL = os.environ.get("SCHAKEL_TEST_PG", "postgresql+psycopg://127.0.0.1:5432/test")


def _pg_reachable() -> str | None:
    """None when PostgreSQL answers, else why not."""
    try:
        engine = sa.create_engine(PG_ADMIN_URL, connect_args={"connect_timeout": 2})
        with engine.connect() as conn:
            conn.execute(sa.text("select 1"))
        engine.dispose()
    except Exception as exc:  # any failure means "no server here"
        return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    return None


_PG_PROBLEM = _pg_reachable()


def pg_schema_url() -> Iterator[str]:
    """A URL bound to a fresh schema on the test server; dropped afterwards."""
    if _PG_PROBLEM is not None:
        pytest.skip(f"PostgreSQL at {PG_ADMIN_URL} did not answer ({_PG_PROBLEM}); SQLite only")
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


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database URL on an empty database: a SQLite file, then a PostgreSQL schema."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'node.db'}"
    else:
        yield from pg_schema_url()


@pytest.fixture(autouse=True)
def _fresh_logging() -> Iterator[None]:
    """Undo any test's logging set-up, so no test logs into a stream pytest already closed."""
    yield
    structlog.reset_defaults()
