"""The one error type of the pseudonym module."""

from __future__ import annotations


class PseudonymError(ValueError):
    """Bad input to a pseudonym operation: a malformed point, scalar, identifier or domain.

    The gRPC layer maps it to ``INVALID_ARGUMENT``. Messages say what was wrong
    and never contain the identifier value or key material.
    """
