"""Errors of the case registry, each with the gRPC status the service layer answers.

Messages name case ids, phases, codes and field names, never a pseudonym,
an identifier or fact content: they may end up in a log line or a status.
"""

from __future__ import annotations

from typing import ClassVar

import grpc


class CaseError(Exception):
    """Base class of every error the case registry raises."""

    code: ClassVar[grpc.StatusCode] = grpc.StatusCode.INTERNAL
    """The gRPC status the service layer answers this error with."""


class CaseInputError(CaseError, ValueError):
    """An argument is malformed; nothing was changed."""

    code = grpc.StatusCode.INVALID_ARGUMENT


class CaseNotFoundError(CaseError, LookupError):
    """No case has the given id."""

    code = grpc.StatusCode.NOT_FOUND


class IllegalTransitionError(CaseError):
    """The action is not allowed in the case's current phase; nothing was changed."""

    code = grpc.StatusCode.FAILED_PRECONDITION


class ReferralConflictError(CaseError):
    """A referral reused an idempotency key with a different payload."""

    code = grpc.StatusCode.ALREADY_EXISTS


class FactIntegrityError(CaseError):
    """A stored fact failed authenticated decryption: altered, moved, or under another key."""

    code = grpc.StatusCode.DATA_LOSS
