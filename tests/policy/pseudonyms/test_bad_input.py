"""Bad input is refused with a PseudonymError that says what was wrong and never leaks the value."""

from __future__ import annotations

import os

import pysodium
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from schakel.v1 import common_pb2

from policy.pseudonyms import (
    Ciphertext,
    FederationKeys,
    PseudonymError,
    Transcryptor,
    check_domain,
    decrypt,
    encrypt,
    is_valid_bsn,
    subject_point,
)
from tests.support.pseudonyms import bsns

FAST = settings(max_examples=60, deadline=None)
IDENTITY = bytes(32)
GENERATOR = bytes.fromhex("e2f2ae0a6abc4e71a884a961c500515f58e30b6aa582dd8db6a65945e08d2d76")
# RFC 9496 A.2 style bad encodings: p itself and 2^255-1 (not canonical), and
# odd field elements (negative, which canonical encodings never are).
NON_CANONICAL = [
    bytes.fromhex("edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"),
    bytes.fromhex("ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"),
    bytes.fromhex("00ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff"),
    bytes.fromhex("0100000000000000000000000000000000000000000000000000000000000000"),
    bytes.fromhex("01ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"),
]


def valid_ct(keys: FederationKeys) -> Ciphertext:
    return encrypt(subject_point("bsn", "123456782"), keys.global_public_key)


@pytest.mark.parametrize("field", ["b", "c", "public_key"])
@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (b"", "must be 32 bytes, got 0"),
        (bytes(31), "must be 32 bytes, got 31"),
        (bytes(33), "must be 32 bytes, got 33"),
        (IDENTITY, "identity point"),
        *[(raw, "not a canonical ristretto255 point encoding") for raw in NON_CANONICAL],
    ],
)
def test_malformed_points_in_proto_are_refused(
    keys: FederationKeys, field: str, bad: bytes, message: str
) -> None:
    good = valid_ct(keys).to_proto()
    msg = common_pb2.EncryptedPseudonym()
    msg.CopyFrom(good)
    setattr(msg, field, bad)
    with pytest.raises(PseudonymError, match=message):
        Ciphertext.from_proto(msg)


def test_missing_message_fields_are_refused() -> None:
    with pytest.raises(PseudonymError, match="ciphertext part B must be 32 bytes, got 0"):
        Ciphertext.from_proto(common_pb2.EncryptedPseudonym())


def test_wrong_message_type_is_refused() -> None:
    with pytest.raises(PseudonymError, match="expected an EncryptedPseudonym"):
        Ciphertext.from_proto(common_pb2.Purpose())  # type: ignore[arg-type]


@FAST
@given(raw=st.binary(min_size=32, max_size=32))
def test_random_32_bytes_that_are_not_points_are_refused(raw: bytes) -> None:
    if raw != IDENTITY and pysodium.crypto_core_ristretto255_is_valid_point(raw):
        assert Ciphertext(raw, raw, raw).b == raw
        return
    with pytest.raises(PseudonymError, match=r"identity point|not a canonical"):
        Ciphertext(GENERATOR, raw, GENERATOR)


@FAST
@given(raw=st.binary(max_size=200).filter(lambda b: len(b) != 96))
def test_wire_form_of_wrong_length_is_refused(raw: bytes) -> None:
    with pytest.raises(
        PseudonymError, match=f"must be 96 bytes \\(B \\|\\| C \\|\\| P\\), got {len(raw)}"
    ):
        Ciphertext.from_bytes(raw)


def test_non_bytes_are_refused() -> None:
    with pytest.raises(PseudonymError, match="a ciphertext must be bytes, not str"):
        Ciphertext.from_bytes("00" * 96)  # type: ignore[arg-type]
    with pytest.raises(PseudonymError, match="ciphertext part C must be bytes, not NoneType"):
        Ciphertext(GENERATOR, None, GENERATOR)  # type: ignore[arg-type]


def test_encrypting_under_a_bad_key_is_refused() -> None:
    point = subject_point("bsn", "123456782")
    with pytest.raises(PseudonymError, match="public key is the identity point"):
        encrypt(point, IDENTITY)
    with pytest.raises(PseudonymError, match="public key is not a canonical"):
        encrypt(point, NON_CANONICAL[0])


@FAST
@given(bsn=bsns(), position=st.integers(0, 8), delta=st.integers(1, 9))
def test_bsn_failing_the_elfproef_is_refused_without_echoing_it(
    bsn: str, position: int, delta: int
) -> None:
    digit = (int(bsn[position]) + delta) % 10
    broken = bsn[:position] + str(digit) + bsn[position + 1 :]
    # Changing one digit always breaks the 11-test: the weights are all non-zero mod 11.
    assert not is_valid_bsn(broken)
    with pytest.raises(PseudonymError) as info:
        subject_point("bsn", broken)
    assert "elfproef" in str(info.value)
    assert broken not in str(info.value) and broken not in repr(info.value)


@pytest.mark.parametrize(
    "bad", ["12345678", "1234567820", "12345678a", " 123456782", "١٢٣٤٥٦٧٨٢", "", "000000000"]
)
def test_bsn_of_wrong_shape_is_refused_without_echoing_it(bad: str) -> None:
    with pytest.raises(PseudonymError, match=r"9 ASCII digits|elfproef") as info:
        subject_point("bsn", bad)
    if bad:
        assert bad not in str(info.value)


@pytest.mark.parametrize("id_type", ["", "BSN", "1bsn", "bsn\x00x", "a" * 33, "b s n", None, 7])
def test_bad_id_type_is_refused(id_type: object) -> None:
    with pytest.raises(PseudonymError, match="id_type must be 1-32 characters"):
        subject_point(id_type, "123456782")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", "must be 1-256 bytes of UTF-8, got 0"),
        ("x" * 257, "must be 1-256 bytes of UTF-8, got 257"),
        ("ab\ncd-secret", "control or unprintable"),
        ("ab\ud800cd-secret", "control or unprintable"),
        (b"raw-secret", "must be a string, not bytes"),
    ],
)
def test_bad_other_identifier_is_refused_without_echoing_it(value: object, message: str) -> None:
    with pytest.raises(PseudonymError, match=message) as info:
        subject_point("vnummer", value)  # type: ignore[arg-type]
    assert "secret" not in str(info.value)


@pytest.mark.parametrize("domain", ["", "has space", "tab\there", "x" * 256, None, ["list"]])
def test_bad_domain_is_refused(keys: FederationKeys, domain: object) -> None:
    with pytest.raises(PseudonymError, match="domain id must"):
        check_domain(domain)
    transcryptor = keys.transcryptor_keys().transcryptor()
    with pytest.raises(PseudonymError, match="domain id must"):
        transcryptor.transcrypt(valid_ct(keys), domain)  # type: ignore[arg-type]
    if domain is not None:  # None as the source means the global key
        in_om = transcryptor.transcrypt(valid_ct(keys), "om")
        with pytest.raises(PseudonymError, match="domain id must"):
            transcryptor.transcrypt(in_om, "om", domain)  # type: ignore[arg-type]
    with pytest.raises(PseudonymError, match="domain id must"):
        transcryptor.domain_public_key(domain, keys.global_public_key)  # type: ignore[arg-type]


def test_short_transcryptor_secrets_are_refused() -> None:
    with pytest.raises(PseudonymError, match="pseudonymisation secret must be at least 32 bytes"):
        Transcryptor(bytes(31), os.urandom(32))
    with pytest.raises(PseudonymError, match="rekey secret must be bytes, not str"):
        Transcryptor(os.urandom(32), "secret")  # type: ignore[arg-type]


def test_ciphertext_under_the_wrong_source_key_is_refused(keys: FederationKeys) -> None:
    transcryptor = keys.transcryptor_keys().transcryptor()
    in_a = transcryptor.transcrypt(valid_ct(keys), "politie-rotterdam")
    with pytest.raises(PseudonymError, match="not encrypted under the global key"):
        transcryptor.transcrypt(in_a, "ggz-delfland")
    with pytest.raises(PseudonymError, match="not encrypted under the key of 'om'"):
        transcryptor.transcrypt(in_a, "ggz-delfland", "om")


@pytest.mark.parametrize(
    ("key", "message"),
    [
        (bytes(32), "domain key is zero"),
        (b"\xff" * 32, "not a canonical scalar"),
        (bytes(16), "must be 32 bytes, got 16"),
        (bytearray(32), "domain key must be bytes, not bytearray"),
    ],
)
def test_bad_domain_key_is_refused(keys: FederationKeys, key: bytes, message: str) -> None:
    with pytest.raises(PseudonymError, match=message):
        decrypt(valid_ct(keys), key)


def test_crafted_ciphertext_decrypting_to_identity_is_refused(keys: FederationKeys) -> None:
    key = keys.domain_key("politie-rotterdam")
    material = keys.domain_key_material("politie-rotterdam")
    b = GENERATOR
    c = pysodium.crypto_scalarmult_ristretto255(key, b)
    with pytest.raises(PseudonymError, match="identity point"):
        decrypt(Ciphertext(b, c, material.public_key), key)
