"""Key files: 0600, no silent overwrite, strict loading, no secret in any message."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from policy.pseudonyms import (
    DomainKey,
    FederationKeys,
    KeyFileError,
    TranscryptorKeys,
    decrypt,
    encrypt,
    subject_point,
)

GENERATOR_HEX = "e2f2ae0a6abc4e71a884a961c500515f58e30b6aa582dd8db6a65945e08d2d76"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def secrets_hex(keys: FederationKeys) -> list[str]:
    return [
        keys.global_secret_key.hex(),
        keys.pseudonymisation_secret.hex(),
        keys.rekey_secret.hex(),
    ]


def test_federation_keys_round_trip_with_mode_0600(tmp_path: Path) -> None:
    keys = FederationKeys.generate()
    path = tmp_path / "federation.json"
    keys.save(path)
    assert mode(path) == 0o600
    assert FederationKeys.load(path) == keys
    assert json.loads(path.read_text())["format"] == "schakel-pep-federation/v1"


def test_repr_hides_secrets() -> None:
    keys = FederationKeys.generate()
    text = repr(keys) + repr(keys.transcryptor_keys()) + repr(keys.domain_key_material("om"))
    for secret in [*secrets_hex(keys), keys.domain_key("om").hex()]:
        assert secret not in text
        assert repr(bytes.fromhex(secret)) not in text


def test_existing_file_is_kept_unless_forced(tmp_path: Path) -> None:
    first, second = FederationKeys.generate(), FederationKeys.generate()
    path = tmp_path / "federation.json"
    first.save(path)
    with pytest.raises(KeyFileError, match="already exists; pass --force"):
        second.save(path)
    assert FederationKeys.load(path) == first
    second.save(path, force=True)
    assert mode(path) == 0o600
    assert FederationKeys.load(path) == second
    assert [p.name for p in tmp_path.iterdir()] == ["federation.json"]


def test_transcryptor_and_domain_files_work_together(tmp_path: Path) -> None:
    keys = FederationKeys.generate()
    keys.transcryptor_keys().save(tmp_path / "transcryptor.json")
    keys.domain_key_material("veilig-thuis-rotterdam").save(tmp_path / "vt.json")
    node = TranscryptorKeys.load(tmp_path / "transcryptor.json")
    partner = DomainKey.load(tmp_path / "vt.json")
    assert "global_secret_key" not in (tmp_path / "transcryptor.json").read_text()
    assert partner.domain == "veilig-thuis-rotterdam"
    ct = encrypt(subject_point("bsn", "123456782"), partner.global_public_key)
    moved = node.transcryptor().transcrypt(ct, partner.domain)
    assert decrypt(moved, partner.secret_key) == decrypt(
        keys.transcryptor_keys().transcryptor().transcrypt(ct, partner.domain),
        keys.domain_key(partner.domain),
    )


@pytest.mark.parametrize("readable", [0o640, 0o604, 0o660])
def test_widely_readable_secret_file_is_refused(tmp_path: Path, readable: int) -> None:
    path = tmp_path / "federation.json"
    FederationKeys.generate().save(path)
    os.chmod(path, readable)
    with pytest.raises(KeyFileError, match=f"mode {readable:04o}.*chmod 600"):
        FederationKeys.load(path)


def write_doc(path: Path, doc: object) -> None:
    path.write_text(json.dumps(doc))
    os.chmod(path, 0o600)


def federation_doc(keys: FederationKeys) -> dict[str, str]:
    return {
        "format": "schakel-pep-federation/v1",
        "global_secret_key": keys.global_secret_key.hex(),
        "global_public_key": keys.global_public_key.hex(),
        "pseudonymisation_secret": keys.pseudonymisation_secret.hex(),
        "rekey_secret": keys.rekey_secret.hex(),
    }


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"format": "schakel-pep-domain/v1"}, "is not a schakel-pep-federation/v1 key file"),
        ({"global_secret_key": None}, "'global_secret_key' is missing or not a string"),
        ({"rekey_secret": "zz"}, "'rekey_secret' is not hex"),
        ({"rekey_secret": "00" * 16}, "RS secret must be at least 32 bytes, got 16"),
        ({"global_secret_key": "ff" * 32}, "global_secret_key is not a canonical scalar"),
        ({"global_public_key": "00" * 32}, "global_public_key is the identity point"),
        (
            {"global_public_key": GENERATOR_HEX},
            "global public key does not match its secret key",
        ),
    ],
)
def test_malformed_federation_file_is_refused_without_leaking(
    tmp_path: Path, change: dict[str, object], message: str
) -> None:
    keys = FederationKeys.generate()
    path = tmp_path / "federation.json"
    write_doc(path, {**federation_doc(keys), **change})
    with pytest.raises(KeyFileError, match=message) as info:
        FederationKeys.load(path)
    for secret in secrets_hex(keys):
        assert secret not in str(info.value)


@pytest.mark.parametrize("content", ["", "not json", "[1, 2]", '"text"', "\udcff"])
def test_non_json_file_is_refused(tmp_path: Path, content: str) -> None:
    path = tmp_path / "keys.json"
    path.write_bytes(content.encode("utf-8", "surrogateescape"))
    os.chmod(path, 0o600)
    with pytest.raises(KeyFileError, match="not a"):
        TranscryptorKeys.load(path)


def test_missing_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match="does not exist"):
        DomainKey.load(tmp_path / "absent.json")


def test_domain_file_with_mismatched_public_key_is_refused(tmp_path: Path) -> None:
    keys = FederationKeys.generate()
    a, b = keys.domain_key_material("a"), keys.domain_key_material("b")
    path = tmp_path / "a.json"
    DomainKey(a.domain, a.secret_key, b.public_key, a.global_public_key).save(path)
    with pytest.raises(KeyFileError, match="domain public key does not match its secret key"):
        DomainKey.load(path)


def test_domain_file_with_bad_domain_is_refused(tmp_path: Path) -> None:
    keys = FederationKeys.generate()
    material = keys.domain_key_material("a")
    path = tmp_path / "a.json"
    material.save(path)
    doc = json.loads(path.read_text())
    write_doc(path, {**doc, "domain": "two words"})
    with pytest.raises(KeyFileError, match="domain id must be non-empty printable text"):
        DomainKey.load(path)


def test_unwritable_directory_gives_clear_error(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match="cannot create"):
        FederationKeys.generate().save(tmp_path / "missing-dir" / "keys.json")
