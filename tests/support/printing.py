"""Reports as they print: Debian's chromium through Playwright (synchronous), for tests
that look at a rendered report page, its A4 fit and its screenshots.

The browser comes from :func:`tests.support.browser.system_chromium`, which
installs it when missing and skips, saying why, when it cannot.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from playwright.sync_api import Browser, sync_playwright

from tests.support.browser import system_chromium

A4_WIDTH_MM = 210


@contextmanager
def chromium() -> Iterator[Browser]:
    """A headless chromium for the duration of the block."""
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(system_chromium()), args=["--no-sandbox"])
        try:
            yield browser
        finally:
            browser.close()


def printed_overflow(browser: Browser, page_html: Path) -> int:
    """Pixels the page sticks out beyond an A4 sheet's printable width (0: it fits).

    The page is laid out with print media at the width of A4 less the
    report's own 12 mm side margins.
    """
    width = round((A4_WIDTH_MM - 24) / 25.4 * 96)
    page = browser.new_page(viewport={"width": width, "height": 1100})
    try:
        page.emulate_media(media="print")
        page.goto(page_html.resolve().as_uri())
        overflow: int = page.evaluate(
            "Math.max(document.documentElement.scrollWidth, document.body.scrollWidth)"
        )
        return max(0, overflow - width)
    finally:
        page.close()


def screenshot(browser: Browser, page_html: Path, out: Path, width: int = 1280) -> None:
    """A full-page PNG of ``page_html`` at ``width`` CSS pixels."""
    page = browser.new_page(viewport={"width": width, "height": 900})
    try:
        page.goto(page_html.resolve().as_uri())
        page.screenshot(path=str(out), full_page=True)
    finally:
        page.close()


def pdf(browser: Browser, page_html: Path, out: Path) -> None:
    """``page_html`` printed to an A4 PDF, as chromium's print dialog would."""
    page = browser.new_page()
    try:
        page.goto(page_html.resolve().as_uri())
        page.pdf(path=str(out), format="A4", prefer_css_page_size=True)
    finally:
        page.close()
