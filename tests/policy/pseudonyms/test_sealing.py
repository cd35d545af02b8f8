"""Sealed pseudonym key files: scrypt + AES-256-GCM with the format and purpose bound."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from policy.pseudonyms import DomainKey, KeyFileError, run_ceremony
from policy.pseudonyms.chain import LocalChain
from policy.pseudonyms.sealing import SEALED_FORMAT, PassphraseFileError
from policy.pseudonyms.shares import DomainFactor, TranscryptorShare


@pytest.fixture
def passphrase(tmp_path: Path) -> Path:
    path = tmp_path / "passphrase"
    path.write_text("correct horse battery staple\n")
    return path


@pytest.fixture
def other_passphrase(tmp_path: Path) -> Path:
    path = tmp_path / "other-passphrase"
    path.write_text("correct horse battery stable\n")
    return path


def local_chain(*names: str) -> LocalChain:
    shares = tuple(TranscryptorShare.generate(n) for n in names)
    return LocalChain(shares, run_ceremony(shares).global_public_key)


def rewrite(path: Path, **changes: object) -> None:
    document = json.loads(path.read_text())
    document.update(changes)
    path.write_text(json.dumps(document))


def test_a_sealed_share_opens_with_its_passphrase_only(tmp_path: Path, passphrase: Path) -> None:
    share = TranscryptorShare.generate("tc-regio")
    path = tmp_path / "share.json"
    share.save(path, passphrase_file=passphrase)
    assert path.stat().st_mode & 0o777 == 0o600
    text = path.read_text()
    assert json.loads(text)["format"] == SEALED_FORMAT
    for secret in (share.pseudonymisation_secret, share.rekey_secret, share.key_share):
        assert secret is not None and secret.hex() not in text
    assert TranscryptorShare.load(path, passphrase) == share


def test_a_sealed_domain_key_round_trips(tmp_path: Path, passphrase: Path) -> None:
    chain = local_chain("tc-a", "tc-b")
    key = chain.domain_key("politie-rr")
    path = tmp_path / "domain.json"
    key.save(path, passphrase_file=passphrase)
    assert DomainKey.load(path, passphrase) == key
    assert key.secret_key.hex() not in path.read_text()


def test_a_wrong_passphrase_is_refused_without_showing_a_secret(
    tmp_path: Path, passphrase: Path, other_passphrase: Path
) -> None:
    share = TranscryptorShare.generate("tc-regio")
    path = tmp_path / "share.json"
    share.save(path, passphrase_file=passphrase)
    with pytest.raises(KeyFileError) as wrong:
        TranscryptorShare.load(path, other_passphrase)
    message = str(wrong.value)
    assert message == f"{path}: cannot open it: wrong passphrase, or the file was altered"
    assert "horse" not in message


def test_an_altered_ciphertext_or_header_does_not_open(tmp_path: Path, passphrase: Path) -> None:
    path = tmp_path / "domain.json"
    local_chain("tc-a").domain_key("politie-rr").save(path, passphrase_file=passphrase)
    original = json.loads(path.read_text())
    flipped = bytearray(bytes.fromhex(original["ciphertext"]))
    flipped[5] ^= 1
    changes: list[dict[str, object]] = [
        {"ciphertext": flipped.hex()},
        {"nonce": "00" * 12},
        {"kdf": {**original["kdf"], "n": 2**14}},
        {"kdf": {**original["kdf"], "salt": "11" * 16}},
    ]
    for change in changes:
        path.write_text(json.dumps(original))
        rewrite(path, **change)
        with pytest.raises(KeyFileError, match="wrong passphrase, or the file was altered"):
            DomainKey.load(path, passphrase)


def test_a_sealed_file_of_another_purpose_is_refused(tmp_path: Path, passphrase: Path) -> None:
    """A sealed factor offered as a domain key: the purpose is checked, and also bound."""
    chain = local_chain("tc-a")
    path = tmp_path / "factor.json"
    factor = chain.shares[0].domain_factor("politie-rr", chain.global_public_key)
    factor.save(path, passphrase_file=passphrase)
    assert DomainFactor.load(path, passphrase) == factor
    with pytest.raises(KeyFileError, match="is not a sealed schakel-pep-domain/v1 key file"):
        DomainKey.load(path, passphrase)
    rewrite(path, purpose="schakel-pep-domain/v1")
    with pytest.raises(KeyFileError, match="the file was altered"):
        DomainKey.load(path, passphrase)


def test_an_absurd_cost_or_malformed_header_is_refused_before_any_work(
    tmp_path: Path, passphrase: Path
) -> None:
    path = tmp_path / "share.json"
    TranscryptorShare.generate("tc-a").save(path, passphrase_file=passphrase)
    original = json.loads(path.read_text())
    for change in (
        {"kdf": {**original["kdf"], "n": 2**30}},
        {"kdf": {**original["kdf"], "n": 3000}},
        {"kdf": {**original["kdf"], "name": "pbkdf2"}},
        {"cipher": "aes-128-cbc"},
        {"nonce": "zz"},
        {"extra": "field"},
    ):
        path.write_text(json.dumps(original))
        rewrite(path, **change)
        with pytest.raises(KeyFileError, match="not a well-formed sealed key file"):
            TranscryptorShare.load(path, passphrase)


def test_the_file_must_match_its_configuration(tmp_path: Path, passphrase: Path) -> None:
    sealed, plain = tmp_path / "sealed.json", tmp_path / "plain.json"
    share = TranscryptorShare.generate("tc-a")
    share.save(sealed, passphrase_file=passphrase)
    share.save(plain)
    with pytest.raises(KeyFileError, match="is sealed with a passphrase: give its passphrase"):
        TranscryptorShare.load(sealed)
    with pytest.raises(KeyFileError, match="is not sealed although a passphrase file is given"):
        TranscryptorShare.load(plain, passphrase)
    assert TranscryptorShare.load(plain) == share


def test_an_unusable_passphrase_file_is_named(tmp_path: Path) -> None:
    short = tmp_path / "short"
    short.write_text("hunter2\n")
    path = tmp_path / "share.json"
    share = TranscryptorShare.generate("tc-a")
    with pytest.raises(PassphraseFileError, match=f"passphrase file {short}: .* at least 12"):
        share.save(path, passphrase_file=short)
    assert not path.exists()
    with pytest.raises(PassphraseFileError, match="cannot read"):
        share.save(path, passphrase_file=tmp_path / "missing")
