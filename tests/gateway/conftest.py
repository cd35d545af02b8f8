"""Fixtures for the tests in this folder; their code lives in tests/support/."""

from tests.support.pki import federation, logs, start_node

__all__ = ["federation", "logs", "start_node"]
