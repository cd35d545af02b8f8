"""Fixtures for the console's browser tests; their code lives in tests/support/browser.py."""

from tests.support.browser import chromium

__all__ = ["chromium"]
