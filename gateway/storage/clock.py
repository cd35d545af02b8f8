"""The clock the node's stores stamp their rows with.

Stores take a :data:`Clock` so that tests can set the time by hand; the
default is :func:`utc_now`. Every time a store writes is timezone-aware UTC.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

Clock = Callable[[], datetime]
"""A function giving the current time, timezone-aware."""


def utc_now() -> datetime:
    """The current time in UTC, the stores' default clock."""
    return datetime.now(UTC)
