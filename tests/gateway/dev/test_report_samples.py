"""The sample reports behind the README's screenshots render, and their screenshots are made."""

from __future__ import annotations

import shutil
from pathlib import Path

from gateway.dev import report_samples
from tests.support import printing


def test_the_samples_render_fit_a4_and_are_shot(tmp_path: Path) -> None:
    if shutil.which("chromium") is None:
        with printing.chromium():  # installs chromium, or skips saying why
            pass
    assert report_samples.main([str(tmp_path)]) == 0
    inzage, signals = (
        (tmp_path / "inzage.html").read_text(),
        (tmp_path / "signals.html").read_text(),
    )
    assert "Samenvatting" in inzage and "Technische bijlage" in inzage
    assert "Twente (zvh-twente) antwoordde niet op tijd" in signals
    for name in ("inzage", "signals"):
        png = (tmp_path / f"{name}.png").read_bytes()
        assert png.startswith(b"\x89PNG") and int.from_bytes(png[16:20], "big") == 1280
    with printing.chromium() as chromium:
        for name in ("inzage", "signals"):
            assert printing.printed_overflow(chromium, tmp_path / f"{name}.html") == 0
