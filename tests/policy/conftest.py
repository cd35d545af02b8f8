"""Fixtures for the tests in this folder; their code lives in tests/support/."""

from tests.support.policy import baseline

__all__ = ["baseline"]
