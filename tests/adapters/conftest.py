"""Fixtures for the tests in this folder; their code lives in tests/support/."""

from tests.support.partners import client, federation, pki, police_keys, sim

__all__ = ["client", "federation", "pki", "police_keys", "sim"]
