"""Fixtures for the tests in this folder; their code lives in tests/support/."""

from tests.support.cluster import trio

__all__ = ["trio"]
