"""Fixtures for the tests in this folder; their code lives in tests/support/."""

from tests.support.cases import clock, engine, registry, vault

__all__ = ["clock", "engine", "registry", "vault"]
