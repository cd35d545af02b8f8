"""``schakel certs pep``: init and domain enrolment, driven through argv."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from certs.pep_cli import main
from policy.pseudonyms import (
    DomainKey,
    FederationKeys,
    TranscryptorKeys,
    decrypt,
    encrypt,
    subject_point,
)


def test_init_then_enrol_a_domain(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "pep"
    assert main(["pep", "init", "--out", str(out)]) == 0
    keys = FederationKeys.load(out / "federation-keys.json")
    node = TranscryptorKeys.load(out / "transcryptor.json")
    assert stat.S_IMODE(out.stat().st_mode) == 0o700
    assert node.global_public_key == keys.global_public_key
    domain_file = tmp_path / "politie.json"
    code = main(
        [
            "pep",
            "domain",
            "politie-rotterdam",
            "--keys",
            str(out / "federation-keys.json"),
            "--out",
            str(domain_file),
        ]
    )
    assert code == 0
    material = DomainKey.load(domain_file)
    assert stat.S_IMODE(domain_file.stat().st_mode) == 0o600
    assert material.secret_key == keys.domain_key("politie-rotterdam")
    ct = encrypt(subject_point("bsn", "123456782"), material.global_public_key)
    moved = node.transcryptor().transcrypt(ct, "politie-rotterdam")
    assert len(decrypt(moved, material.secret_key)) == 32
    printed = capsys.readouterr()
    text = printed.out + printed.err
    assert keys.global_public_key.hex() in text
    for secret in (
        keys.global_secret_key,
        keys.pseudonymisation_secret,
        keys.rekey_secret,
        material.secret_key,
    ):
        assert secret.hex() not in text


def test_init_refuses_to_overwrite_without_force(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["pep", "init", "--out", str(tmp_path)]) == 0
    before = (tmp_path / "federation-keys.json").read_bytes()
    assert main(["pep", "init", "--out", str(tmp_path)]) == 1
    assert "already exists; pass --force" in capsys.readouterr().err
    assert (tmp_path / "federation-keys.json").read_bytes() == before
    assert main(["pep", "init", "--out", str(tmp_path), "--force"]) == 0
    assert (tmp_path / "federation-keys.json").read_bytes() != before
    TranscryptorKeys.load(tmp_path / "transcryptor.json")


def test_init_writes_nothing_when_only_the_transcryptor_file_exists(tmp_path: Path) -> None:
    (tmp_path / "transcryptor.json").write_text("{}")
    assert main(["pep", "init", "--out", str(tmp_path)]) == 1
    assert not (tmp_path / "federation-keys.json").exists()


def test_domain_refuses_overwrite_bad_org_and_bad_keys(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    main(["pep", "init", "--out", str(tmp_path)])
    keys = str(tmp_path / "federation-keys.json")
    target = tmp_path / "om.json"
    assert main(["pep", "domain", "om", "--keys", keys, "--out", str(target)]) == 0
    assert main(["pep", "domain", "om", "--keys", keys, "--out", str(target)]) == 1
    assert main(["pep", "domain", "two words", "--keys", keys, "--out", str(tmp_path / "x")]) == 1
    assert not (tmp_path / "x").exists()
    transcryptor = str(tmp_path / "transcryptor.json")
    assert main(["pep", "domain", "om", "--keys", transcryptor, "--out", str(tmp_path / "y")]) == 1
    err = capsys.readouterr().err
    assert "already exists" in err
    assert "domain id must be" in err
    assert "is not a schakel-pep-federation/v1 key file" in err
    assert main(["pep", "domain", "om", "--keys", keys, "--out", str(target), "--force"]) == 0


def test_missing_arguments_are_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["pep", "domain", "om"])
    assert info.value.code == 2
    assert "--keys" in capsys.readouterr().err


def test_domain_creates_the_folder_of_its_out_file(tmp_path: Path) -> None:
    assert main(["pep", "init", "--out", str(tmp_path / "pep")]) == 0
    target = tmp_path / "enrol" / "politie-dh" / "domain.json"
    keys = str(tmp_path / "pep" / "federation-keys.json")
    assert main(["pep", "domain", "politie-dh", "--keys", keys, "--out", str(target)]) == 0
    assert DomainKey.load(target).domain == "politie-dh"
    assert stat.S_IMODE(target.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
