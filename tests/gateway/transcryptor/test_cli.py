"""``schakel transcryptor init | ceremony | enrol`` and ``schakel certs pep assemble``."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from gateway.cli import main
from policy.pseudonyms import DomainKey, FederationKeys
from policy.pseudonyms.ceremony import Transcript
from policy.pseudonyms.chain import LocalChain
from policy.pseudonyms.shares import TranscryptorShare
from tests.support.pki import Federation


def write_config(fed: Federation, root: Path, transcryptor: str) -> Path:
    cred = fed.transcryptor(transcryptor)
    state = root / transcryptor
    (state / "allow.toml").write_text("")
    path = state / "transcryptor.toml"
    path.write_text(
        f"""[transcryptor]
id = "{transcryptor}"
state_dir = "{state}"

[tls]
ca_file = "{fed.ca_file}"
cert_file = "{cred.cert_file}"
key_file = "{cred.key_file}"

[policy]
file = "{state / "allow.toml"}"
"""
    )
    return path


def test_init_ceremony_enrol_and_assemble(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fed = Federation(tmp_path / "pki")
    names = ("tc-regio", "tc-landelijk")
    configs = {}
    for name in names:
        assert (
            main(["transcryptor", "init", "--id", name, "--state-dir", str(tmp_path / name)]) == 0
        )
        assert (tmp_path / name / "share.json").stat().st_mode & 0o777 == 0o600
        configs[name] = write_config(fed, tmp_path, name)
    first, second = tmp_path / "step-1.json", tmp_path / "step-2.json"
    assert (
        main(["transcryptor", "ceremony", "--config", str(configs[names[0]]), "--out", str(first)])
        == 0
    )
    args = ["--previous", str(first), "--out", str(second)]
    assert main(["transcryptor", "ceremony", "--config", str(configs[names[1]]), *args]) == 0
    capsys.readouterr()
    assert main(["transcryptor", "ceremony", "--verify", str(second)]) == 0
    shown = capsys.readouterr().out
    transcript = Transcript.load(second)
    assert f"federation key Y = {transcript.global_public_key.hex()}" in shown
    assert transcript.transcryptors == list(names)
    # Without the finished transcript in its state directory a transcryptor cannot enrol.
    out = tmp_path / "factor-0.json"
    assert (
        main(
            [
                "transcryptor",
                "enrol",
                "politie-rr",
                "--config",
                str(configs[names[0]]),
                "--out",
                str(out),
            ]
        )
        == 2
    )
    factors = []
    # The factors travel sealed under a passphrase the domain agreed with its transcryptors.
    transfer = tmp_path / "transfer-passphrase"
    transfer.write_text("politie-rr transfer passphrase\n")
    for i, name in enumerate(names):
        shutil.copyfile(second, tmp_path / name / "ceremony.json")
        out = tmp_path / f"factor-{i}.json"
        code = main(
            [
                "transcryptor",
                "enrol",
                "politie-rr",
                "--config",
                str(configs[name]),
                "--out",
                str(out),
                "--passphrase-file",
                str(transfer),
            ]
        )
        assert code == 0
        assert "factor" not in json.loads(out.read_text())
        factors.append(str(out))
    domain = tmp_path / "politie-rr.json"
    assert main(["certs", "pep", "assemble", *factors, "--out", str(domain)]) != 0
    assert "politie-rr transfer" not in capsys.readouterr().err
    assert (
        main(
            [
                "certs",
                "pep",
                "assemble",
                *factors,
                "--out",
                str(domain),
                "--factor-passphrase-file",
                str(transfer),
            ]
        )
        == 0
    )
    shares = tuple(TranscryptorShare.load(tmp_path / n / "share.json") for n in names)
    chain = LocalChain(shares, transcript.global_public_key)
    assert DomainKey.load(domain) == chain.domain_key("politie-rr")
    # A step taken twice is refused.
    assert (
        main(
            [
                "transcryptor",
                "ceremony",
                "--config",
                str(configs[names[0]]),
                "--previous",
                str(second),
                "--out",
                str(tmp_path / "x.json"),
            ]
        )
        == 1
    )
    assert "already took its step" in capsys.readouterr().err


def test_a_single_key_file_becomes_a_chain_of_one_with_the_same_keys(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["certs", "pep", "init", "--out", str(tmp_path / "pep")]) == 0
    keys = FederationKeys.load(tmp_path / "pep" / "federation-keys.json")
    fed = Federation(tmp_path / "pki")
    state = tmp_path / "tc-enige"
    single = ["--from-single", str(tmp_path / "pep" / "federation-keys.json")]
    assert (
        main(["transcryptor", "init", "--id", "tc-enige", "--state-dir", str(state), *single]) == 0
    )
    config = write_config(fed, tmp_path, "tc-enige")
    out = tmp_path / "factor.json"
    assert (
        main(["transcryptor", "enrol", "politie-rr", "--config", str(config), "--out", str(out)])
        == 0
    )
    domain = tmp_path / "politie-rr.json"
    assert main(["certs", "pep", "assemble", str(out), "--out", str(domain)]) == 0
    assert DomainKey.load(domain) == keys.domain_key_material("politie-rr")
    assert Transcript.load(state / "ceremony.json").global_public_key == keys.global_public_key
    # From a node's transcryptor.json (no y) it converts as before but cannot enrol.
    other = tmp_path / "tc-node"
    node_file = ["--from-single", str(tmp_path / "pep" / "transcryptor.json")]
    assert (
        main(["transcryptor", "init", "--id", "tc-node", "--state-dir", str(other), *node_file])
        == 0
    )
    share = TranscryptorShare.load(other / "share.json")
    assert share.key_share is None
    assert share.pseudonymisation_secret == keys.pseudonymisation_secret
    config = write_config(fed, tmp_path, "tc-node")
    capsys.readouterr()
    assert (
        main(
            [
                "transcryptor",
                "enrol",
                "politie-rr",
                "--config",
                str(config),
                "--out",
                str(tmp_path / "f2.json"),
            ]
        )
        == 1
    )
    assert "no key share" in capsys.readouterr().err
