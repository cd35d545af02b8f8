"""Errors of the case registry, each a branch of the node's one error tree.

Messages name case ids, phases, codes and field names, never a pseudonym,
an identifier or fact content: they may end up in a log line or a status.
"""

from __future__ import annotations

from gateway.errors import (
    ConflictError,
    DataLossError,
    InvalidInputError,
    NotFoundError,
    SchakelError,
    WrongStateError,
)


class CaseError(SchakelError):
    """Base class of every error the case registry raises."""


class CaseInputError(CaseError, InvalidInputError):
    """An argument is malformed; nothing was changed."""


class CaseNotFoundError(CaseError, NotFoundError):
    """No case has the given id."""


class IllegalTransitionError(CaseError, WrongStateError):
    """The action is not allowed in the case's current phase; nothing was changed."""


class ReferralConflictError(CaseError, ConflictError):
    """A referral reused an idempotency key with a different payload."""


class FactIntegrityError(CaseError, DataLossError):
    """A stored fact failed authenticated decryption: altered, moved, or under another key."""


class LinkConflictError(CaseError, ConflictError):
    """A case node's update contradicts the link it made (another subject, activity or type)."""


class LinkClosedError(CaseError, WrongStateError):
    """The case link is closed (or was never made), so nothing may be done within it."""
