"""``schakel certs``: a CA in a directory, issuance, revocation, CRLs, identities."""

from __future__ import annotations

import argparse
import stat
from pathlib import Path

import pytest
from cryptography import x509

from certs import cli
from certs.ca_store import CaStore, node_dns_name
from certs.identity import PeerKind, identity_from_certificate

OIN = "00000001823288444000"


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers())
    args = parser.parse_args(argv)
    code: int = args.func(args)
    return code


@pytest.fixture
def ca_dir(tmp_path: Path) -> Path:
    assert run(["certs", "init-ca", "--ca-dir", str(tmp_path / "ca"), "--name", "Test CA"]) == 0
    return tmp_path / "ca"


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_init_ca_writes_a_0600_key_and_refuses_to_replace_it(
    ca_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _mode(ca_dir / "ca.key") == 0o600
    cert = x509.load_pem_x509_certificate((ca_dir / "ca.pem").read_bytes())
    assert cert.subject.rfc4514_string() == "CN=Test CA"
    key_before = (ca_dir / "ca.key").read_bytes()
    capsys.readouterr()
    assert run(["certs", "init-ca", "--ca-dir", str(ca_dir)]) == 1
    assert "ca.key already exists; pass --force" in capsys.readouterr().err
    assert (ca_dir / "ca.key").read_bytes() == key_before
    assert run(["certs", "init-ca", "--ca-dir", str(ca_dir), "--force"]) == 0
    assert (ca_dir / "ca.key").read_bytes() != key_before
    assert _mode(ca_dir / "ca.key") == 0o600


@pytest.mark.parametrize(
    ("argv", "stem", "kind", "uri"),
    [
        (
            ["node", "--node-id", "zvh-haaglanden", "--dns", "schakel.zvh-haaglanden.nl"],
            "node-zvh-haaglanden",
            PeerKind.NODE,
            "schakel://node/zvh-haaglanden",
        ),
        (
            ["partner", "--node-id", "zvh-haaglanden", "--org-id", "ggz-dh", "--org-type", "ggz"],
            "ggz-dh",
            PeerKind.PARTNER,
            "schakel://partner/zvh-haaglanden/ggz-dh",
        ),
        (
            ["officer", "--node-id", "zvh-haaglanden", "--role", "fg"],
            "zvh-haaglanden-fg",
            PeerKind.OFFICER,
            "schakel://officer/zvh-haaglanden/fg",
        ),
        (
            ["officer", "--node-id", "zvh-haaglanden", "--role", "procesregisseur"],
            "zvh-haaglanden-procesregisseur",
            PeerKind.OFFICER,
            "schakel://officer/zvh-haaglanden/procesregisseur",
        ),
        (
            ["collector", "--org-id", "stuurgroep"],
            "collector-stuurgroep",
            PeerKind.COLLECTOR,
            "schakel://collector/stuurgroep",
        ),
        (
            ["transcryptor", "--org-id", "tc-logius", "--dns", "tc.logius.example"],
            "transcryptor-tc-logius",
            PeerKind.TRANSCRYPTOR,
            "schakel://transcryptor/tc-logius",
        ),
    ],
)
def test_issue_each_kind(
    ca_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    stem: str,
    kind: PeerKind,
    uri: str,
) -> None:
    out = tmp_path / "out"
    base = ["certs", "issue", *argv, "--oin", OIN, "--ca-dir", str(ca_dir), "--out", str(out)]
    assert run([*base, "--days", "90"]) == 0
    cert_file, key_file = out / f"{stem}.pem", out / f"{stem}.key"
    assert _mode(key_file) == 0o600
    cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
    identity = identity_from_certificate(cert)
    assert (identity.kind, identity.uri, identity.oin) == (kind, uri, OIN)
    ca = x509.load_pem_x509_certificate((ca_dir / "ca.pem").read_bytes())
    cert.verify_directly_issued_by(ca)
    assert (cert.not_valid_after_utc - cert.not_valid_before_utc).days == 90
    if kind is PeerKind.NODE:
        dns = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert set(dns.get_values_for_type(x509.DNSName)) == {
            "schakel.zvh-haaglanden.nl",
            node_dns_name("zvh-haaglanden"),
        }

    capsys.readouterr()
    assert run(["certs", "show", str(cert_file)]) == 0
    shown = dict(line.split(":", 1) for line in capsys.readouterr().out.splitlines() if ":" in line)
    assert shown["uri"].strip() == uri
    assert shown["kind"].strip() == kind.value
    assert shown["serial"].strip() == f"{cert.serial_number:x}"

    key_before = key_file.read_bytes()
    assert run(base) == 1
    assert "already exists; pass --force" in capsys.readouterr().err
    assert key_file.read_bytes() == key_before
    assert run([*base, "--force"]) == 0
    assert key_file.read_bytes() != key_before
    assert _mode(key_file) == 0o600


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["partner", "--node-id", "zvh-haaglanden", "--org-id", "x"], "unknown partner org type"),
        (["partner", "--node-id", "ZVH", "--org-id", "x", "--org-type", "ggz"], "node id 'ZVH'"),
        (["node", "--node-id", "zvh-a", "--role", "fg"], "a node certificate carries no roles"),
        (["officer", "--node-id", "zvh-a"], "needs exactly one role"),
        (["partner", "--node-id", "zvh-a", "--org-id", "zvh-a", "--org-type", "ggz"], "node's id"),
        (
            ["partner", "--node-id", "zvh-a", "--org-id", "x", "--org-type", "ggz", "--dns", "h"],
            "DNS",
        ),
        (["node", "--node-id", "zvh-a", "--days", "0"], "--days must be at least 1"),
        (["node", "--node-id", "zvh-a", "--days", "99999"], "would outlive the CA"),
    ],
)
def test_bad_issue_arguments_say_what_is_wrong_and_write_nothing(
    ca_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    out = tmp_path / "out"
    code = run(["certs", "issue", *argv, "--oin", OIN, "--ca-dir", str(ca_dir), "--out", str(out)])
    assert code == 1
    assert message in capsys.readouterr().err
    assert not out.exists() or not list(out.iterdir())


def test_issue_without_a_ca_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["certs", "issue", "node", "--node-id", "zvh-a", "--oin", OIN]
    assert run([*argv, "--ca-dir", str(tmp_path / "nowhere"), "--out", str(tmp_path)]) == 1
    assert "no CA in" in capsys.readouterr().err


def _issue_partner(ca_dir: Path, out: Path, org: str) -> x509.Certificate:
    argv = ["certs", "issue", "partner", "--node-id", "zvh-a", "--org-id", org]
    argv += ["--org-type", "politie", "--oin", OIN, "--ca-dir", str(ca_dir), "--out", str(out)]
    assert run(argv) == 0
    return x509.load_pem_x509_certificate((out / f"{org}.pem").read_bytes())


def test_revoke_by_file_or_serial_and_publish_a_signed_crl(
    ca_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first = _issue_partner(ca_dir, tmp_path, "politie-a")
    second = _issue_partner(ca_dir, tmp_path, "politie-b")
    kept = _issue_partner(ca_dir, tmp_path, "politie-c")
    assert run(["certs", "revoke", str(tmp_path / "politie-a.pem"), "--ca-dir", str(ca_dir)]) == 0
    serial = f"{second.serial_number:x}"
    padded = serial.zfill(len(serial) + len(serial) % 2)
    colons = ":".join(padded[i : i + 2] for i in range(0, len(padded), 2))
    assert run(["certs", "revoke", f"0x{colons.upper()}", "--ca-dir", str(ca_dir)]) == 0
    capsys.readouterr()
    assert run(["certs", "revoke", serial, "--ca-dir", str(ca_dir)]) == 0
    assert "already revoked" in capsys.readouterr().out

    crl_path = tmp_path / "published.pem"
    assert run(["certs", "crl", "--ca-dir", str(ca_dir), "--out", str(crl_path)]) == 0
    crl = x509.load_pem_x509_crl(crl_path.read_bytes())
    ca = x509.load_pem_x509_certificate((ca_dir / "ca.pem").read_bytes())
    assert crl.is_signature_valid(ca.public_key())  # type: ignore[arg-type]
    assert {entry.serial_number for entry in crl} == {first.serial_number, second.serial_number}
    assert crl.get_revoked_certificate_by_serial_number(kept.serial_number) is None
    assert run(["certs", "crl", "--ca-dir", str(ca_dir)]) == 0
    assert (ca_dir / "crl.pem").read_bytes().startswith(b"-----BEGIN X509 CRL")


def test_revoke_refuses_what_this_ca_did_not_issue(
    ca_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = tmp_path / "other"
    assert run(["certs", "init-ca", "--ca-dir", str(other)]) == 0
    foreign = _issue_partner(other, tmp_path, "politie-x")
    index_before = (ca_dir / "index.json").read_text()
    capsys.readouterr()
    assert run(["certs", "revoke", str(tmp_path / "politie-x.pem"), "--ca-dir", str(ca_dir)]) == 1
    assert "was not issued by the CA" in capsys.readouterr().err
    assert run(["certs", "revoke", f"{foreign.serial_number:x}", "--ca-dir", str(ca_dir)]) == 1
    assert "was not issued by the CA" in capsys.readouterr().err
    assert run(["certs", "revoke", "not-hex", "--ca-dir", str(ca_dir)]) == 1
    assert "neither a certificate file nor a hex serial" in capsys.readouterr().err
    assert (ca_dir / "index.json").read_text() == index_before
    assert CaStore.open(ca_dir).revoked() == []


def test_show_refuses_a_file_that_is_not_a_certificate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "junk.pem").write_text("hello")
    assert run(["certs", "show", str(tmp_path / "junk.pem")]) == 1
    assert "not a PEM or DER certificate" in capsys.readouterr().err
