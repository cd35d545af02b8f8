"""Keys kept in a PKCS#11 token (SoftHSM2): the CA key signs certificates and CRLs, the
audit key signs checkpoints, and neither ever leaves the token.

The set-up installs what it needs: SoftHSM2 (Debian package ``softhsm2``)
with apt-get when it is missing and the tests run as root, python-pkcs11
with pip. It skips, saying why, only when neither is possible.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from certs import cli
from gateway import cli as schakel_cli

OIN = "00000001823288444000"
PIN = "20251129"
MODULES = (
    Path("/usr/lib/softhsm/libsofthsm2.so"),
    Path("/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so"),
    Path("/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so"),
    Path("/usr/local/lib/softhsm/libsofthsm2.so"),
)


def _module() -> Path | None:
    return next((m for m in MODULES if m.is_file()), None)


def _install_softhsm() -> str:
    """Try to install SoftHSM2; why it could not be, or "" when it was."""
    apt = shutil.which("apt-get")
    if apt is None:
        return "no apt-get to install the softhsm2 package with"
    if os.geteuid() != 0:
        return "apt-get install softhsm2 needs root"
    done = subprocess.run(
        [apt, "install", "-y", "softhsm2"], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        subprocess.run([apt, "update"], capture_output=True, check=False)
        done = subprocess.run(
            [apt, "install", "-y", "softhsm2"], capture_output=True, text=True, check=False
        )
    return "" if done.returncode == 0 else f"apt-get install softhsm2 failed: {done.stderr[-300:]}"


def _install_python_pkcs11() -> str:
    try:
        import pkcs11  # noqa: F401, PLC0415
    except ImportError:
        done = subprocess.run(
            [sys.executable, "-m", "pip", "install", "python-pkcs11"],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            return f"pip install python-pkcs11 failed: {done.stderr[-300:]}"
    return ""


@dataclass(frozen=True)
class SoftHsm:
    """A SoftHSM2 token ``schakel`` in a directory of its own."""

    module: Path
    pin_file: Path

    def uri(self, label: str) -> str:
        """The PKCS#11 URI of the key ``label`` in the token."""
        return (
            f"pkcs11:token=schakel;object={label}"
            f"?module-path={self.module}&pin-source=file:{self.pin_file}"
        )


@pytest.fixture(scope="session")
def softhsm(tmp_path_factory: pytest.TempPathFactory) -> SoftHsm:
    """An initialised token; SOFTHSM2_CONF is set before the module is first loaded."""
    module = _module()
    if module is None:
        reason = _install_softhsm()
        module = _module()
        if module is None:
            pytest.skip(f"SoftHSM2 is not installed and cannot be installed here: {reason}")
    reason = _install_python_pkcs11()
    if reason:
        pytest.skip(f"python-pkcs11 is not installed and cannot be installed here: {reason}")
    util = shutil.which("softhsm2-util")
    assert util is not None, "the softhsm2 package comes with softhsm2-util"
    root = tmp_path_factory.mktemp("softhsm")
    (root / "tokens").mkdir()
    conf = root / "softhsm2.conf"
    conf.write_text(
        f"directories.tokendir = {root / 'tokens'}\nobjectstore.backend = file\nlog.level = ERROR\n"
    )
    os.environ["SOFTHSM2_CONF"] = str(conf)
    subprocess.run(
        [util, "--init-token", "--free", "--label", "schakel", "--so-pin", "1" + PIN, "--pin", PIN],
        check=True,
        capture_output=True,
    )
    pin_file = root / "user.pin"
    pin_file.write_text(PIN + "\n")
    return SoftHsm(module, pin_file)


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers())
    args = parser.parse_args(argv)
    code: int = args.func(args)
    return code


def test_a_ca_key_kept_in_softhsm_signs_certificates_and_crls(
    softhsm: SoftHsm, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from certs import hsm  # noqa: PLC0415 - after the set-up made sure python-pkcs11 is there

    ca_dir, uri = tmp_path / "ca", softhsm.uri("federation-ca")
    assert run(["certs", "init-ca", "--ca-dir", str(ca_dir), "--pkcs11-uri", uri]) == 0
    assert not (ca_dir / "ca.key").exists()
    assert (ca_dir / "ca.pkcs11").read_text().strip() == uri
    ca = x509.load_pem_x509_certificate((ca_dir / "ca.pem").read_bytes())

    # A partner enrols by CSR; the CA signs with the key in the token.
    request = ["certs", "request", "partner", "--node-id", "zvh-a", "--org-id", "ggz-a"]
    assert run([*request, "--org-type", "ggz", "--oin", OIN, "--out", str(tmp_path)]) == 0
    assert run(["certs", "sign", str(tmp_path / "ggz-a.csr"), "--ca-dir", str(ca_dir)]) == 0
    cert = x509.load_pem_x509_certificate((tmp_path / "ggz-a.pem").read_bytes())
    cert.verify_directly_issued_by(ca)

    assert run(["certs", "revoke", str(tmp_path / "ggz-a.pem"), "--ca-dir", str(ca_dir)]) == 0
    assert run(["certs", "crl", "--ca-dir", str(ca_dir)]) == 0
    crl = x509.load_pem_x509_crl((ca_dir / "crl.pem").read_bytes())
    assert crl.is_signature_valid(ca.public_key())  # type: ignore[arg-type]
    assert crl.get_revoked_certificate_by_serial_number(cert.serial_number) is not None

    key = hsm.load_ec_key(uri)
    assert key.public_key() == ca.public_key()
    with pytest.raises(hsm.HsmError, match="cannot be exported"):
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )


def test_an_audit_key_kept_in_softhsm_signs_the_nodes_checkpoints(
    softhsm: SoftHsm, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from certs import hsm  # noqa: PLC0415 - after the set-up made sure python-pkcs11 is there
    from gateway.app import load_parts  # noqa: PLC0415
    from gateway.audit import notes  # noqa: PLC0415
    from tests.support.pki import RR, Federation  # noqa: PLC0415

    uri = softhsm.uri("audit-log-rr")
    hsm.generate_ed25519_key(uri)
    assert schakel_cli.main(["audit", "keys", uri, "--name", RR, "--kind", "log"]) == 0
    vkey = capsys.readouterr().out.split()[0]

    (tmp_path / "pki").mkdir()
    federation = Federation(tmp_path / "pki")
    config = federation.config(
        federation.node(RR), extra=f'\n[audit]\nsigning_key_pkcs11 = "{uri}"\n'
    )
    parts = load_parts(config)
    try:
        stored = parts.checkpointer.sign()
    finally:
        parts.audit.close()
        parts.engine.dispose()
    checkpoint, _ = notes.open_checkpoint(stored.note, notes.Verifier.from_vkey(vkey))
    assert (checkpoint.origin, checkpoint.size) == (RR, 0)
    assert parts.log_key.vkey() == vkey
