"""Enrolment by CSR, ids that cannot collide, CRL numbers, and keys encrypted at rest."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from certs import cli
from certs.authority import crl_number
from certs.ca_store import CaStore
from certs.identity import PeerKind, identity_from_certificate

OIN = "00000001823288444000"
PASSPHRASE = "correct horse battery staple"


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


def _fingerprint(out: str) -> str:
    (line,) = [line for line in out.splitlines() if "key sha256" in line]
    return line.split()[2]


def test_request_then_sign_issues_for_the_owners_key_which_never_reaches_the_ca(
    ca_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    owner = tmp_path / "politie"
    argv = ["certs", "request", "partner", "--node-id", "zvh-a", "--org-id", "politie-a"]
    assert run([*argv, "--org-type", "politie", "--oin", OIN, "--out", str(owner)]) == 0
    asked = _fingerprint(capsys.readouterr().out)
    key_file, csr_file = owner / "politie-a.key", owner / "politie-a.csr"
    assert key_file.stat().st_mode & 0o777 == 0o600
    csr = x509.load_pem_x509_csr(csr_file.read_bytes())
    assert csr.subject.get_attributes_for_oid(NameOID.BUSINESS_CATEGORY)[0].value == "politie"

    cert_file = tmp_path / "issued.pem"
    expect = "schakel://partner/zvh-a/politie-a"
    sign = ["certs", "sign", str(csr_file), "--ca-dir", str(ca_dir), "--out", str(cert_file)]
    assert run([*sign, "--expect", expect, "--days", "30"]) == 0
    assert _fingerprint(capsys.readouterr().out) == asked

    cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
    key = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
    assert cert.public_key() == key.public_key()
    cert.verify_directly_issued_by(x509.load_pem_x509_certificate((ca_dir / "ca.pem").read_bytes()))
    identity = identity_from_certificate(cert)
    assert (identity.kind, identity.uri, identity.org_type) == (PeerKind.PARTNER, expect, "politie")
    assert not list(ca_dir.glob("*politie*"))


def _csr(subject: x509.Name, uris: list[str], key: ec.EllipticCurvePrivateKey) -> bytes:
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(subject)
        .add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(u) for u in uris]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.PEM)


def _oin_name(*extra: x509.NameAttribute) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.SERIAL_NUMBER, OIN), *extra])


def _tampered() -> bytes:
    der = bytearray(
        x509.load_pem_x509_csr(
            _csr(_oin_name(), ["schakel://node/zvh-a"], ec.generate_private_key(ec.SECP256R1()))
        ).public_bytes(serialization.Encoding.DER)
    )
    der[-3] ^= 0x01  # inside the signature
    return bytes(der)


@pytest.mark.parametrize(
    ("request_bytes", "message"),
    [
        (
            _csr(
                _oin_name(x509.NameAttribute(NameOID.BUSINESS_CATEGORY, "zvh")),
                ["schakel://partner/zvh-a/regie-a"],
                ec.generate_private_key(ec.SECP256R1()),
            ),
            "org type 'zvh'",
        ),
        (
            _csr(
                _oin_name(),
                ["schakel://officer/zvh-a/baas"],
                ec.generate_private_key(ec.SECP256R1()),
            ),
            "officer role 'baas'",
        ),
        (
            _csr(
                _oin_name(),
                ["schakel://node/zvh-a"],
                ec.generate_private_key(ec.SECP384R1()),
            ),
            "ECDSA P-256",
        ),
        (_tampered(), "signature does not verify"),
        (b"not a request", "not a PEM or DER"),
    ],
)
def test_sign_refuses_a_request_outside_the_profile_and_writes_nothing(
    ca_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    request_bytes: bytes,
    message: str,
) -> None:
    csr_file = tmp_path / "asked.csr"
    csr_file.write_bytes(request_bytes)
    index_before = (ca_dir / "index.json").read_text()
    assert run(["certs", "sign", str(csr_file), "--ca-dir", str(ca_dir)]) == 1
    assert message in capsys.readouterr().err
    assert not (tmp_path / "asked.pem").exists()
    assert (ca_dir / "index.json").read_text() == index_before


def test_sign_refuses_an_identity_other_than_the_one_expected(
    ca_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["certs", "request", "node", "--node-id", "zvh-a", "--oin", OIN, "--out", str(tmp_path)]
    assert run(argv) == 0
    sign = ["certs", "sign", str(tmp_path / "node-zvh-a.csr"), "--ca-dir", str(ca_dir)]
    assert run([*sign, "--expect", "schakel://node/zvh-b"]) == 1
    assert "asks for schakel://node/zvh-a, not schakel://node/zvh-b" in capsys.readouterr().err
    assert not (tmp_path / "node-zvh-a.pem").exists()


def test_the_ca_keeps_node_ids_and_organisation_ids_apart(
    ca_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["--oin", OIN, "--ca-dir", str(ca_dir), "--out", str(tmp_path)]
    assert run(["certs", "issue", "node", "--node-id", "zvh-b", *base]) == 0
    partner = ["certs", "issue", "partner", "--node-id", "zvh-a", "--org-type", "ggz"]
    capsys.readouterr()
    # A partner of node zvh-a named like node zvh-b would read zvh-b's hand-overs.
    assert run([*partner, "--org-id", "zvh-b", *base]) == 1
    assert "'zvh-b' is the id of a node" in capsys.readouterr().err
    assert run([*partner, "--org-id", "ggz-a", *base]) == 0
    assert run(["certs", "issue", "node", "--node-id", "ggz-a", *base]) == 1
    assert "'ggz-a' is the organisation id of a partner" in capsys.readouterr().err
    request = ["certs", "request", "node", "--node-id", "ggz-a", "--oin", OIN]
    assert run([*request, "--out", str(tmp_path / "req")]) == 0
    csr = tmp_path / "req" / "node-ggz-a.csr"
    assert run(["certs", "sign", str(csr), "--ca-dir", str(ca_dir)]) == 1
    assert "organisation id of a partner" in capsys.readouterr().err


def test_every_crl_has_a_higher_number(ca_dir: Path, tmp_path: Path) -> None:
    numbers = []
    for _ in range(3):
        assert run(["certs", "crl", "--ca-dir", str(ca_dir)]) == 0
        crl = x509.load_pem_x509_crl((ca_dir / "crl.pem").read_bytes())
        numbers.append(crl_number(crl))
    assert None not in numbers
    assert numbers == sorted(set(numbers))  # type: ignore[type-var]


def test_a_ca_key_encrypted_at_rest_needs_its_passphrase(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ca_dir, secret, wrong = tmp_path / "ca", tmp_path / "ca.pass", tmp_path / "wrong.pass"
    secret.write_text(PASSPHRASE + "\n")
    wrong.write_text("not the passphrase at all\n")
    init = ["certs", "init-ca", "--ca-dir", str(ca_dir), "--ca-passphrase-file", str(secret)]
    assert run(init) == 0
    assert (ca_dir / "ca.key").read_bytes().startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    issue = ["certs", "issue", "node", "--node-id", "zvh-a", "--oin", OIN]
    issue += ["--ca-dir", str(ca_dir), "--out", str(tmp_path)]
    capsys.readouterr()
    assert run(issue) == 1
    assert "is encrypted: give its passphrase file" in capsys.readouterr().err
    assert run([*issue, "--ca-passphrase-file", str(wrong)]) == 1
    assert "wrong passphrase" in capsys.readouterr().err
    # The new key is encrypted too when asked, with its own passphrase file.
    assert run([*issue, "--ca-passphrase-file", str(secret), "--passphrase-file", str(secret)]) == 0
    node_key = (tmp_path / "node-zvh-a.key").read_bytes()
    assert node_key.startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    assert CaStore.open(ca_dir, passphrase_file=secret).revoked() == []


def test_encrypt_key_encrypts_in_place_and_a_short_passphrase_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["certs", "request", "node", "--node-id", "zvh-a", "--oin", OIN, "--out", str(tmp_path)]
    assert run(argv) == 0
    key_file = tmp_path / "node-zvh-a.key"
    plain = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
    short = tmp_path / "short.pass"
    short.write_text("geheim\n")
    capsys.readouterr()
    assert run(["certs", "encrypt-key", str(key_file), "--passphrase-file", str(short)]) == 1
    assert "at least 12 characters" in capsys.readouterr().err
    secret = tmp_path / "good.pass"
    secret.write_text(PASSPHRASE + "\n")
    assert run(["certs", "encrypt-key", str(key_file), "--passphrase-file", str(secret)]) == 0
    data = key_file.read_bytes()
    assert data.startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    assert key_file.stat().st_mode & 0o777 == 0o600
    opened = serialization.load_pem_private_key(data, password=PASSPHRASE.encode())
    assert opened.public_key() == plain.public_key()
