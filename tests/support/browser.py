"""The console's browser tests: Debian's chromium through Playwright, and a federation
whose RR node serves the console.

Playwright (PyPI) drives the system browser at :data:`CHROMIUM`; nothing is
downloaded. When chromium is missing the set-up installs it with apt-get
(as root, one worker at a time), and skips saying why when it cannot.
Screenshots of every page go to :data:`SHOTS` (``bench-results/console/``).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from tests.support.flow import Flow, partner_sections, running_flow
from tests.support.paths import ROOT
from tests.support.pki import RR, Credential
from tests.support.ports import free_port

CHROMIUM = Path("/usr/bin/chromium")
SHOTS = ROOT / "bench-results" / "console"
"""Where the tests save a screenshot of every page they open."""
_LOCK = Path("/tmp/schakel-chromium-install.lock")


def _install_chromium() -> str:
    """Install Debian's chromium; why it could not be, or "" when it is there."""
    apt = shutil.which("apt-get")
    if apt is None:
        return "no apt-get to install the chromium package with"
    if os.geteuid() != 0:
        return "apt-get install chromium needs root"
    with _LOCK.open("w") as lock:
        # Two workers may both find it missing: one installs, the other waits for it.
        fcntl.flock(lock, fcntl.LOCK_EX)
        if CHROMIUM.exists():
            return ""
        done = subprocess.run([apt, "install", "-y", "chromium"], capture_output=True, check=False)
        if done.returncode != 0:
            subprocess.run([apt, "update"], capture_output=True, check=False)
            done = subprocess.run(
                [apt, "install", "-y", "chromium"], capture_output=True, text=True, check=False
            )
    if done.returncode != 0 or not CHROMIUM.exists():
        return f"apt-get install chromium failed: {str(done.stderr)[-300:]}"
    return ""


def system_chromium() -> Path:
    """The system chromium, installed when missing; skips the test when it cannot be."""
    if not CHROMIUM.exists():
        reason = _install_chromium()
        if reason:
            pytest.skip(f"the console's browser tests need {CHROMIUM}: {reason}")
    return CHROMIUM


@contextlib.asynccontextmanager
async def browser() -> AsyncIterator[Any]:
    """One headless chromium for a test module."""
    path = system_chromium()
    from playwright.async_api import async_playwright  # noqa: PLC0415 - only once chromium is there

    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=str(path), headless=True)
        try:
            yield launched
        finally:
            await launched.close()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def chromium() -> AsyncIterator[Any]:
    """One chromium for the whole test module (its tests run in the module's event loop)."""
    async with browser() as launched:
        yield launched


async def context_for(browser: Any, origin: str, cred: Credential | None) -> Any:
    """A browser context that presents ``cred`` (None: no certificate) to ``origin``.

    The node's certificate names its DNS name, not 127.0.0.1, and the test CA
    is in no browser store: an officer's browser trusts the federation CA, a
    test checks the client side instead.
    """
    certificates = (
        [{"origin": origin, "certPath": str(cred.cert_file), "keyPath": str(cred.key_file)}]
        if cred is not None
        else []
    )
    return await browser.new_context(
        client_certificates=certificates,
        ignore_https_errors=True,
        locale="nl-NL",
        timezone_id="Europe/Amsterdam",
        viewport={"width": 1280, "height": 900},
    )


async def shot(page: Any, name: str) -> Path:
    """Save a full-page screenshot of ``page`` as ``SHOTS/<name>.png``."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    await page.screenshot(path=str(path), full_page=True)
    return path


@contextlib.asynccontextmanager
async def console_flow(root: Path) -> AsyncIterator[tuple[Flow, str]]:
    """RR and HL on SQLite with local partners; RR serves the console. Yields the flow and
    the console's origin (``https://127.0.0.1:<port>``)."""
    port = free_port()

    def sections(node_id: str) -> str:
        console = f'\n[console]\nlisten = "127.0.0.1:{port}"\n' if node_id == RR else ""
        return partner_sections(node_id) + console

    async with running_flow(root, f"sqlite:///{root / 'rr.db'}", sections) as flow:
        console = flow.pair.nodes[RR].console
        assert console is not None, "RR was configured with a console"
        yield flow, f"https://127.0.0.1:{console.port}"
