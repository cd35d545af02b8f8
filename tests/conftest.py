"""Shared fixtures. Storage tests take ``db_url`` and so run on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

# Before any test module imports grpc: the package sets grpc's TLS 1.3 cipher suites.
import gateway  # noqa: F401
from tests.support.databases import pg_schema_url


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
