"""``make run --once`` builds the dev federation, walks a case through it, and reuses its state."""

from __future__ import annotations

import ast
import io
import socket
import stat
from pathlib import Path

import pytest

from gateway.dev import federation
from gateway.dev import run as devrun
from tests.support.paths import ROOT

WALKTHROUGH = [title for title, _ in devrun.CHECKS if title.startswith("walkthrough: ")]


def test_dev_federation_walks_a_case_through_and_reuses_its_state(tmp_path: Path) -> None:
    out = io.StringIO()
    assert devrun.main(["--once", "--state-dir", str(tmp_path), "--ports", "auto"], out) == 0
    first = out.getvalue()
    assert "created a dev CA" in first
    assert f"== {len(devrun.CHECKS)} of {len(devrun.CHECKS)} checks passed" in first
    assert "FAILED" not in first
    assert stat.S_IMODE((tmp_path / "ca" / "ca.key").stat().st_mode) == 0o600
    for node_id in (federation.ROTTERDAM, federation.HAAGLANDEN):
        config = (tmp_path / node_id / "node.toml").read_text()
        for org_id, _ in federation.PARTNERS[node_id]:
            assert f'[[partners]]\nid = "{org_id}"' in config
        assert (tmp_path / node_id / "state" / "node.db").is_file()
        assert "\n[console]\nlisten = " in config
        assert f"{node_id}'s console: https://localhost:" in first
        for role in ("procesregisseur", "fg"):
            assert (tmp_path / "certs" / f"{node_id}-{role}.p12").is_file()
    assert len(WALKTHROUGH) == 11
    for title in WALKTHROUGH:
        assert f"   ok      {title}: " in first, title
    lines = {line.split(": ", 2)[1]: line for line in first.splitlines() if "walkthrough: " in line}
    assert "was refused" in lines["the procesregisseur moves the case into triage"]
    hits = lines["the procesregisseur runs hit/no-hit"]
    assert "politie-rr -> " in hits
    assert f"{federation.HAAGLANDEN} -> " in hits
    accepted = lines["the procesregisseur accepts at triage"]
    assert f"{federation.HAAGLANDEN} took its case link first" in accepted
    assert "with politie-hl (politie) taking part there" in accepted
    outside = lines[f"{federation.ROTTERDAM} asks {federation.HAAGLANDEN} outside the case link"]
    assert "PERMISSION_DENIED: purpose 'zvh.huiselijk-geweld' is not activity" in outside
    withheld = lines["uitvraag without consent"]
    assert "zorg.in_zorg withheld (art9-no-ground)" in withheld
    released = lines["uitvraag with consent"]
    assert "released to ['gemeente-rotterdam'] under ['cc-ggz-in-zorg']" in released
    assert "which its index resolves to its record(s) ['" in released
    # The simulated partners keep their own generated data, apart from the nodes.
    partners = tmp_path / "partners"
    assert (partners / "politie-rr" / "registratie.db").is_file()
    assert (partners / "politie-hl" / "registratie.db").is_file()
    assert (partners / "ggz-rr" / "clienten.db").is_file()
    drop = partners / "gemeente-rotterdam" / "drop"
    assert sorted(p.name for p in (drop / "processed").iterdir()) == [
        "huisvesting_2026-11.csv",
        "schulden_2026-11.csv",
    ]
    (rejected,) = (drop / "quarantine").iterdir()
    assert "fails the elfproef" in rejected.read_text()
    cert_before = (tmp_path / "certs" / "politie-rr.pem").read_bytes()

    out = io.StringIO()
    assert devrun.main(["--once", "--state-dir", str(tmp_path), "--ports", "auto"], out) == 0
    second = out.getvalue()
    assert "reusing the dev CA" in second
    assert "(0 newly issued)" in second
    assert (tmp_path / "certs" / "politie-rr.pem").read_bytes() == cert_before
    assert "FAILED" not in second
    # The second run walks a new case; HL's case from the first run is still active.
    assert "still active from an earlier run" in second
    # No BSN of the demo person reaches the nodes' or the partners' log lines.
    assert federation.DEMO_BSN not in (tmp_path / "nodes.log").read_text()


def test_a_taken_dev_port_is_a_clear_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        monkeypatch.setitem(federation.DEV_PORTS, federation.ROTTERDAM, taken.getsockname()[1])
        out = io.StringIO()
        assert devrun.main(["--once", "--state-dir", str(tmp_path)], out) == 1
    text = out.getvalue()
    config = tmp_path / federation.ROTTERDAM / "node.toml"
    assert f"FAILED: {config}: node.listen: cannot listen" in text
    assert "--ports auto" in text


def _imports(path: Path) -> set[str]:
    """Every module ``path`` imports by absolute name (``from a import b`` gives a and a.b)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def _forbidden_in_the_node(name: str) -> bool:
    if name == "gateway.dev" or name.startswith("gateway.dev."):
        return True
    # The node shares only the W3C trace context with the SDK.
    return name.partition(".")[0] == "adapters" and not name.startswith("adapters.sdk.tracecontext")


def test_the_node_imports_neither_the_dev_federation_nor_the_partner_sdk() -> None:
    gateway = ROOT / "gateway"
    offending = [
        (path.relative_to(ROOT), name)
        for path in sorted(gateway.rglob("*.py"))
        if gateway / "dev" not in path.parents
        for name in _imports(path)
        if _forbidden_in_the_node(name)
    ]
    assert offending == []
