"""Fixtures for the tests in this folder; their code lives in tests/support/."""

from tests.support.chain import running
from tests.support.pair import pair
from tests.support.pki import logs

__all__ = ["logs", "pair", "running"]
