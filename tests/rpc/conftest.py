"""Two whole nodes with local partners on loopback mTLS, RR on SQLite then PostgreSQL."""

from __future__ import annotations

from tests.flow.conftest import flow

__all__ = ["flow"]
