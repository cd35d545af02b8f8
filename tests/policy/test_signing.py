"""Signed bundles: only validly signed bundles load; reloads keep the last good one."""

from __future__ import annotations

import base64
import os
import shutil
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from policy.model import PolicyError
from policy.signing import (
    SignatureError,
    generate_key,
    load_private_key,
    load_public_key,
    public_key_path,
    read_signed,
    sign_bundle,
    signature_path,
)
from policy.store import PolicyStore
from tests.support.policy import BASELINE, SMALL


@pytest.fixture
def key(tmp_path: Path) -> Path:
    return _key(tmp_path, "policy.key")


def _key(tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    generate_key(path)
    return path


@pytest.fixture
def bundle(tmp_path: Path, key: Path) -> Path:
    path = tmp_path / "bundle.yaml"
    shutil.copyfile(BASELINE, path)
    sign_bundle(path, key)
    return path


def _pub(key: Path) -> object:
    return load_public_key(public_key_path(key))


def test_keygen_writes_a_private_key_only_the_owner_can_read(key: Path) -> None:
    assert (key.stat().st_mode & 0o777) == 0o600
    assert b"PRIVATE KEY" in key.read_bytes()
    assert b"PUBLIC KEY" in public_key_path(key).read_bytes()
    load_private_key(key)


def test_keygen_refuses_to_overwrite(key: Path) -> None:
    before = key.read_bytes()
    with pytest.raises(PolicyError, match="refusing to overwrite"):
        generate_key(key)
    assert key.read_bytes() == before


def test_a_signed_bundle_verifies(bundle: Path, key: Path) -> None:
    assert read_signed(bundle, load_public_key(public_key_path(key))) == bundle.read_bytes()
    assert len(base64.b64decode(signature_path(bundle).read_bytes())) == 64


def test_unsigned_is_refused(bundle: Path, key: Path) -> None:
    signature_path(bundle).unlink()
    with pytest.raises(SignatureError, match="unsigned"):
        read_signed(bundle, load_public_key(public_key_path(key)))
    with pytest.raises(SignatureError, match="unsigned"):
        PolicyStore(bundle, load_public_key(public_key_path(key)))


def test_tampered_is_refused(bundle: Path, key: Path) -> None:
    data = bundle.read_bytes().replace(b"providers: [politie]", b"providers: [gemeente]", 1)
    bundle.write_bytes(data)
    with pytest.raises(SignatureError, match="does not match"):
        PolicyStore(bundle, load_public_key(public_key_path(key)))


def test_a_single_flipped_byte_is_refused(bundle: Path, key: Path) -> None:
    data = bytearray(bundle.read_bytes())
    data[-2] ^= 0x01
    bundle.write_bytes(bytes(data))
    with pytest.raises(SignatureError):
        read_signed(bundle, load_public_key(public_key_path(key)))


def test_wrong_key_is_refused(bundle: Path, tmp_path: Path) -> None:
    other = _key(tmp_path, "other.key")
    with pytest.raises(SignatureError, match="another key"):
        PolicyStore(bundle, load_public_key(public_key_path(other)))


@pytest.mark.parametrize(
    ("content", "message"),
    [(b"not base64 !!", "not base64"), (base64.b64encode(b"x" * 10), "10 bytes")],
)
def test_malformed_signatures_are_refused(
    bundle: Path, key: Path, content: bytes, message: str
) -> None:
    signature_path(bundle).write_bytes(content)
    with pytest.raises(SignatureError, match=message):
        read_signed(bundle, load_public_key(public_key_path(key)))


def test_keys_of_another_kind_are_refused(tmp_path: Path) -> None:
    ecdsa = ec.generate_private_key(ec.SECP256R1())
    path = tmp_path / "ec.pub"
    path.write_bytes(
        ecdsa.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    with pytest.raises(PolicyError, match="must be Ed25519"):
        load_public_key(path)
    with pytest.raises(PolicyError, match="not a readable"):
        load_public_key(tmp_path / "absent.pub")


def _resign(path: Path, text: str, key: Path) -> None:
    path.write_text(text)
    sign_bundle(path, key)


def test_reload_swaps_in_a_newly_signed_bundle(tmp_path: Path, key: Path) -> None:
    path = tmp_path / "small.yaml"
    _resign(path, SMALL, key)
    store = PolicyStore.from_files(path, public_key_path(key))
    first = store.bundle_hash
    assert store.check() is False
    _resign(path, SMALL.replace('version: "1"', 'version: "2"'), key)
    assert store.check() is True
    assert store.bundle_hash != first
    assert store.evaluator.policy.bundle.version == "2"


@pytest.mark.parametrize("failure", ["unsigned", "tampered", "wrong-key", "invalid"])
def test_a_failed_reload_keeps_the_last_good_bundle(
    tmp_path: Path, key: Path, failure: str
) -> None:
    path = tmp_path / "small.yaml"
    _resign(path, SMALL, key)
    store = PolicyStore(path, load_public_key(public_key_path(key)))
    good = store.bundle_hash
    if failure == "unsigned":
        signature_path(path).unlink()
    elif failure == "tampered":
        path.write_text(SMALL.replace("providers: [politie]", "providers: [ggz]"))
    elif failure == "wrong-key":
        _resign(path, SMALL.replace('version: "1"', 'version: "2"'), _key(tmp_path, "x.key"))
    else:
        _resign(path, SMALL.replace("providers: [politie]", "providers: [bank]"), key)
    assert store.check() is False
    assert store.bundle_hash == good
    assert store.last_error
    assert store.evaluator.policy.bundle.version == "1"
    _resign(path, SMALL.replace('version: "1"', 'version: "3"'), key)
    assert store.check() is True
    assert store.evaluator.policy.bundle.version == "3"
    assert store.last_error == ""


def test_hot_reload_in_the_background(tmp_path: Path, key: Path) -> None:
    path = tmp_path / "small.yaml"
    _resign(path, SMALL, key)
    store = PolicyStore(path, load_public_key(public_key_path(key)), interval=0.02)
    store.start()
    try:
        path.write_text(SMALL.replace('version: "1"', 'version: "evil"'))
        time.sleep(0.2)
        assert store.evaluator.policy.bundle.version == "1"
        sign_bundle(path, key)
        deadline = time.monotonic() + 5
        while store.evaluator.policy.bundle.version != "evil" and time.monotonic() < deadline:
            time.sleep(0.01)
        assert store.evaluator.policy.bundle.version == "evil"
    finally:
        store.stop()


def test_the_committed_tree_holds_no_private_key() -> None:
    root = BASELINE.parents[3]
    for directory in (root / "policy", root / "tests" / "policy"):
        for dirpath, _dirs, files in os.walk(directory):
            for name in files:
                data = (Path(dirpath) / name).read_bytes()
                assert b"PRIVATE KEY-----" not in data or name.endswith(".py"), name
