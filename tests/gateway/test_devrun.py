"""``make run --once`` builds the dev federation, passes its checks, and reuses its PKI."""

from __future__ import annotations

import io
import socket
import stat
from pathlib import Path

import pytest

from gateway import devrun


def test_dev_federation_runs_its_checks_and_reuses_the_pki(tmp_path: Path) -> None:
    out = io.StringIO()
    assert devrun.main(["--once", "--state-dir", str(tmp_path), "--ports", "auto"], out) == 0
    first = out.getvalue()
    assert "created a dev CA" in first
    assert f"== {len(devrun.CHECKS)} of {len(devrun.CHECKS)} checks passed" in first
    assert "FAILED" not in first
    assert stat.S_IMODE((tmp_path / "ca" / "ca.key").stat().st_mode) == 0o600
    for node_id in (devrun.ROTTERDAM, devrun.HAAGLANDEN):
        assert (tmp_path / node_id / "node.toml").is_file()
        assert (tmp_path / node_id / "state" / "node.db").is_file()
    cert_before = (tmp_path / "certs" / "politie-rr.pem").read_bytes()

    out = io.StringIO()
    assert devrun.main(["--once", "--state-dir", str(tmp_path), "--ports", "auto"], out) == 0
    assert "reusing the dev CA" in out.getvalue()
    assert "(0 newly issued)" in out.getvalue()
    assert (tmp_path / "certs" / "politie-rr.pem").read_bytes() == cert_before


def test_a_taken_dev_port_is_a_clear_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        monkeypatch.setitem(devrun.DEV_PORTS, devrun.ROTTERDAM, taken.getsockname()[1])
        out = io.StringIO()
        assert devrun.main(["--once", "--state-dir", str(tmp_path)], out) == 1
    text = out.getvalue()
    config = tmp_path / devrun.ROTTERDAM / "node.toml"
    assert f"FAILED: {config}: node.listen: cannot listen" in text
    assert "--ports auto" in text
