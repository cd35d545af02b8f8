"""Structured JSON logs on stderr (or a given stream).

Log lines carry identity URIs, method names, status codes, durations and
trace ids. They never carry message contents: nothing here formats a
request or response, and callers must not bind one.
"""

from __future__ import annotations

import json
import logging
import sys
from typing import Any, TextIO

import structlog

LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


def configure_logging(level: str = "info", stream: TextIO | None = None) -> None:
    """Send structlog JSON lines at ``level`` and above to ``stream`` (default stderr).

    Values bound with :func:`structlog.contextvars.bind_contextvars` (the
    trace context of the current call) are merged into every line.
    """
    if level not in LEVELS:
        raise ValueError(f"unknown log level {level!r}; known: {sorted(LEVELS)}")
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(serializer=_Dumps(), sort_keys=True),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(LEVELS[level]),
        logger_factory=structlog.PrintLoggerFactory(file=stream or sys.stderr),
        cache_logger_on_first_use=False,
    )


class _Dumps:
    """``json.dumps`` with one encoder for all lines.

    ``json.dumps`` builds a new encoder per call whenever an option (here
    ``sort_keys`` and structlog's ``default``) differs from its defaults; the
    options of one renderer never change.
    """

    def __init__(self) -> None:
        self._encoder: json.JSONEncoder | None = None

    def __call__(self, obj: Any, **options: Any) -> str:
        if self._encoder is None:
            self._encoder = json.JSONEncoder(**options)
        return self._encoder.encode(obj)


def get_logger(name: str) -> structlog.typing.FilteringBoundLogger:
    """A logger that names its component in every line."""
    logger: structlog.typing.FilteringBoundLogger = structlog.get_logger(component=name)
    return logger
