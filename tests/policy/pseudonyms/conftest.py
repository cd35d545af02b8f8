"""Fixtures for the tests in this folder; their code lives in tests/support/."""

from tests.support.pseudonyms import keys, transcryptor

__all__ = ["keys", "transcryptor"]
