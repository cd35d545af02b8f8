"""The error types of the pseudonym module: bad input, and unusable key files."""

from __future__ import annotations


class PseudonymError(ValueError):
    """Bad input to a pseudonym operation: a malformed point, scalar, identifier or domain.

    The gRPC layer maps it to ``INVALID_ARGUMENT``. Messages say what was wrong
    and never contain the identifier value or key material.
    """


class KeyFileError(ValueError):
    """A key file is missing, malformed, inconsistent, too widely readable, or already exists.

    Also a sealed file that does not open. Messages name the file, never key material.
    """
