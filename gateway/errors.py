"""Every refusal a node can answer, as one exception tree with no transport in it.

Flows, stores and brokers raise these; :mod:`gateway.rpc.status` maps each
branch to a gRPC status in one place, writes the refusal's audit record and
answers. A caller catches a branch (``except WrongStateError``), not a list.

Messages are read by the calling system and may reach a log line, so they
name fields, codes and ids, never a BSN, a pseudonym or fact content, and
quote a request value only through :func:`quote`, which cuts it short and
never echoes a BSN or a date (:func:`policy.text.identifier_in`).

::

    SchakelError
    ├── InvalidInputError        the request itself is malformed
    │   └── OutOfRangeError      it names a position beyond what exists (yet)
    ├── NotAuthenticatedError    no usable client certificate
    ├── DeniedError              policy or access rules refuse the caller
    ├── NotFoundError            what the request names does not exist
    ├── ConflictError            a retry that does not match the first call
    ├── WrongStateError          not possible now (phase, closed case, no config)
    │   └── NotConfiguredError   the node lacks the configuration this needs
    ├── ExhaustedError           a limit was reached; try again later
    ├── TimedOutError            the call's deadline ran out
    ├── UnavailableError         infrastructure failed; nothing was released
    │   └── AuditUnavailableError    the audit record could not be written
    ├── DataLossError            stored data failed its integrity check
    └── UnsupportedError         not served by this node
"""

from __future__ import annotations

from policy.text import identifier_in

QUOTE_LIMIT = 64
"""The most characters of a request value a message quotes."""


def quote(value: object, limit: int = QUOTE_LIMIT) -> str:
    """``repr`` of ``value`` for an error message, cut to ``limit`` characters.

    A longer value is shown by its start and its length, so a 100 kB field
    neither fills the answer nor disappears without trace. A value holding
    a BSN or a date is not shown at all, only what it holds.
    """
    text = value if isinstance(value, str) else str(value)
    found = identifier_in(text[: limit * 4])
    if found is not None:
        return f"(a value holding {found}, not shown)"
    if len(text) <= limit:
        return repr(text)
    return f"{text[:limit]!r}... ({len(text)} characters)"


class SchakelError(Exception):
    """Base of every refusal a node answers; the message is safe to send to the caller."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidInputError(SchakelError, ValueError):
    """The request is malformed: a field is missing, too long, or of the wrong form."""


class OutOfRangeError(InvalidInputError):
    """The request names a position (index, size) beyond what exists; it may exist later."""


class NotAuthenticatedError(SchakelError):
    """The caller presented no usable, valid client certificate."""


class DeniedError(SchakelError):
    """Policy or the access rules do not let this caller do this."""


class NotFoundError(SchakelError, LookupError):
    """What the request names does not exist (here)."""


class ConflictError(SchakelError):
    """A retried request (same idempotency key) differs from the first one."""


class WrongStateError(SchakelError):
    """The request is well-formed but not possible in the current state."""


class NotConfiguredError(WrongStateError):
    """The node lacks the configuration this request needs."""


class ExhaustedError(SchakelError):
    """A limit was reached (queue, rate); the caller may try again later."""


class TimedOutError(SchakelError):
    """The call's deadline ran out before the work was done."""


class UnavailableError(SchakelError):
    """Infrastructure failed (database, peer); nothing was released."""


class AuditUnavailableError(UnavailableError):
    """The audit record could not be written durably, so nothing was released."""


class DataLossError(SchakelError):
    """Stored data failed its integrity check: altered, moved, or under another key."""


class UnsupportedError(SchakelError):
    """This node does not serve the request."""


__all__ = [
    "QUOTE_LIMIT",
    "AuditUnavailableError",
    "ConflictError",
    "DataLossError",
    "DeniedError",
    "ExhaustedError",
    "InvalidInputError",
    "NotAuthenticatedError",
    "NotConfiguredError",
    "NotFoundError",
    "OutOfRangeError",
    "SchakelError",
    "TimedOutError",
    "UnavailableError",
    "UnsupportedError",
    "WrongStateError",
    "quote",
]
