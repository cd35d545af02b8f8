"""Fixtures for the tests in this folder; their code lives in tests/support/."""

from tests.support.pair import pair

__all__ = ["pair"]
