"""deploy/systemd/schakel-node.service passes ``systemd-analyze verify`` without a warning."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "deploy" / "systemd" / "schakel-node.service"
SYSTEM_UNITS = Path("/lib/systemd/system")


def verify(unit_text: str, root: Path) -> subprocess.CompletedProcess[str]:
    """``systemd-analyze verify`` of ``unit_text`` in a root with the unit's executable.

    The root holds a copy of this machine's system units (targets the unit
    names) and a stub /opt/schakel/bin/schakel, so the check runs without
    installing anything on the machine.
    """
    analyze = shutil.which("systemd-analyze")
    if analyze is None or not SYSTEM_UNITS.is_dir():
        pytest.skip("systemd-analyze is not installed here (apt-get install systemd)")
    stub = root / "opt" / "schakel" / "bin" / "schakel"
    stub.parent.mkdir(parents=True)
    stub.write_text("#!/bin/sh\n")
    stub.chmod(0o755)
    (root / "usr" / "lib" / "systemd").mkdir(parents=True)
    shutil.copytree(SYSTEM_UNITS, root / "usr" / "lib" / "systemd" / "system", symlinks=True)
    units = root / "etc" / "systemd" / "system"
    units.mkdir(parents=True)
    (units / UNIT.name).write_text(unit_text)
    return subprocess.run(
        [analyze, "verify", f"--root={root}", UNIT.name],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_unit_verifies_without_a_warning(tmp_path: Path) -> None:
    done = verify(UNIT.read_text(), tmp_path)
    assert (done.returncode, done.stdout + done.stderr) == (0, "")


def test_a_mistake_in_the_unit_is_reported(tmp_path: Path) -> None:
    done = verify(UNIT.read_text().replace("\nRestart=", "\nRestartt="), tmp_path)
    assert "Unknown key 'Restartt'" in done.stderr


def test_the_unit_runs_the_node_unprivileged_and_hardened() -> None:
    text = UNIT.read_text()
    for line in (
        "User=schakel",
        "ExecStart=/opt/schakel/bin/schakel node run --config /etc/schakel/node.toml",
        "StateDirectory=schakel",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "CapabilityBoundingSet=",
        "RestartPreventExitStatus=2",
    ):
        assert f"\n{line}\n" in text, line
