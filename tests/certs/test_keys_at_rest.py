"""Audit keys encrypted at rest, their vkeys recovered from the key files, and ``--version``."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.app import load_parts
from gateway.cli import main
from gateway.config import ConfigError
from tests.support.pki import RR, Federation

PASSPHRASE = "correct horse battery staple"


@pytest.fixture
def federation(tmp_path: Path) -> Federation:
    return Federation(tmp_path)


def _audit_section(tmp_path: Path, passphrase_file: Path) -> str:
    return (
        "\n[audit]\n"
        f'signing_key = "{tmp_path / "keys" / "audit-log.key"}"\n'
        f'signing_key_passphrase_file = "{passphrase_file}"\n'
        f'witness_key = "{tmp_path / "keys" / "audit-witness.key"}"\n'
        f'witness_key_passphrase_file = "{passphrase_file}"\n'
    )


def _vkeys(federation: Federation, extra: str) -> tuple[str, str]:
    """Load the node's parts as at a start; the vkeys of its audit keys."""
    parts = load_parts(federation.config(federation.node(RR, force=True), extra=extra))
    try:
        return parts.log_key.vkey(), parts.witness_verifier.vkey()
    finally:
        parts.audit.close()
        parts.engine.dispose()


def test_audit_keys_made_encrypted_open_with_their_passphrase_and_yield_their_vkeys(
    federation: Federation, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    secret = tmp_path / "audit.pass"
    secret.write_text(PASSPHRASE + "\n")
    extra = _audit_section(tmp_path, secret)
    log_vkey, witness_vkey = _vkeys(federation, extra)
    keys = tmp_path / "keys"
    for name in ("audit-log.key", "audit-witness.key"):
        data = (keys / name).read_bytes()
        assert data.startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
        assert (keys / name).stat().st_mode & 0o777 == 0o600
    # A restart opens the same keys.
    assert _vkeys(federation, extra) == (log_vkey, witness_vkey)

    # The vkeys can be recovered from the key files alone (and the node id).
    files = [str(keys / "audit-log.key"), str(keys / "audit-witness.key")]
    capsys.readouterr()
    assert main(["audit", "keys", *files, "--name", RR, "--passphrase-file", str(secret)]) == 0
    printed = [line.split() for line in capsys.readouterr().out.splitlines()]
    assert printed == [[log_vkey, files[0]], [witness_vkey, files[1]]]


def test_an_encrypted_audit_key_without_its_passphrase_stops_the_start_naming_the_key(
    federation: Federation, tmp_path: Path
) -> None:
    secret = tmp_path / "audit.pass"
    secret.write_text(PASSPHRASE + "\n")
    _vkeys(federation, _audit_section(tmp_path, secret))
    missing = tmp_path / "nowhere.pass"
    with pytest.raises(ConfigError, match=r"audit\.signing_key_passphrase_file: passphrase file"):
        _vkeys(federation, _audit_section(tmp_path, missing))
    plain = _audit_section(tmp_path, secret).replace(
        f'signing_key_passphrase_file = "{secret}"\n', ""
    )
    with pytest.raises(ConfigError, match=r"audit\.signing_key: .* is encrypted"):
        _vkeys(federation, plain)


def test_audit_keys_needs_a_kind_when_the_file_name_says_none(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "checkpoints"
    assert main(["audit", "keygen", "--name", RR, "--kind", "log", "--out", str(out)]) == 0
    made = capsys.readouterr().out.strip()
    assert main(["audit", "keys", str(out.with_suffix(".key")), "--name", RR]) == 2
    assert "say --kind log or --kind witness" in capsys.readouterr().err
    key = str(out.with_suffix(".key"))
    assert main(["audit", "keys", key, "--name", RR, "--kind", "log"]) == 0
    assert capsys.readouterr().out.split()[0] == made


def test_schakel_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("schakel ")
    assert "grpcio " in out
    assert "cryptography " in out
