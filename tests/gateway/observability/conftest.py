"""Fixtures for the tests in this folder; their code lives in tests/support/."""

from tests.support.flow import flow

__all__ = ["flow"]
