"""``make dist``: the wheel carries the node, the generated API, its data files and the licence."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_the_wheel_holds_everything_a_node_needs(tmp_path: Path) -> None:
    pytest.importorskip("build")
    source = tmp_path / "src"
    # A copy, so the build's scratch folders never land in the work tree.
    shutil.copytree(
        ROOT,
        source,
        ignore=shutil.ignore_patterns(".venv", ".state", ".git", "__pycache__", "*.db", "dist"),
    )
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(tmp_path)],
        cwd=source,
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = tmp_path.glob("schakel-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for expected in (
        "gateway/app.py",
        "gateway/storage/migrations/versions/0001_audit_log.py",
        "gateway/storage/migrations/script.py.mako",
        "schakel/v1/partner_pb2.py",
        "policy/bundles/baseline/bundle.yaml",
        "adapters/sdk/__init__.py",
        "gateway/console/templates/zaak.html",
        "gateway/console/static/noble-ristretto255.js",
        "gateway/console/static/noble-curves.LICENSE.txt",
    ):
        assert expected in names, expected
    info = next(n for n in names if n.endswith(".dist-info/METADATA"))
    metadata = zipfile.ZipFile(wheel).read(info).decode()
    assert "License-Expression: EUPL-1.2" in metadata
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    assert "schakel = gateway.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()
