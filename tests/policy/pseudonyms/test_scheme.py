"""Properties of the scheme: stable per domain, unlinkable across domains, composable."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from schakel.v1 import common_pb2

from policy.pseudonyms import (
    Ciphertext,
    FederationKeys,
    PseudonymError,
    Transcryptor,
    decrypt,
    encrypt,
    pseudonym_hex,
    rerandomise,
    subject_point,
)
from tests.support.pseudonyms import bsns, domains

FAST = settings(max_examples=40, deadline=None)


def pseudonym_in(keys: FederationKeys, transcryptor: Transcryptor, bsn: str, domain: str) -> bytes:
    ct = encrypt(subject_point("bsn", bsn), keys.global_public_key)
    return decrypt(transcryptor.transcrypt(ct, domain), keys.domain_key(domain))


@FAST
@given(bsn=bsns(), domain=domains, other=domains)
def test_same_id_same_pseudonym_in_a_domain_different_across(
    keys: FederationKeys, transcryptor: Transcryptor, bsn: str, domain: str, other: str
) -> None:
    first = pseudonym_in(keys, transcryptor, bsn, domain)
    again = pseudonym_in(keys, transcryptor, bsn, domain)
    assert first == again
    assert len(first) == 32
    if other != domain:
        assert pseudonym_in(keys, transcryptor, bsn, other) != first


@FAST
@given(a=bsns(), b=bsns(), domain=domains)
def test_different_ids_different_pseudonyms(
    keys: FederationKeys, transcryptor: Transcryptor, a: str, b: str, domain: str
) -> None:
    if a != b:
        assert pseudonym_in(keys, transcryptor, a, domain) != pseudonym_in(
            keys, transcryptor, b, domain
        )


@FAST
@given(bsn=bsns(), a=domains, b=domains, c=domains)
def test_a_to_b_to_c_equals_a_to_c(
    keys: FederationKeys, transcryptor: Transcryptor, bsn: str, a: str, b: str, c: str
) -> None:
    in_a = transcryptor.transcrypt(encrypt(subject_point("bsn", bsn), keys.global_public_key), a)
    via_b = transcryptor.transcrypt(transcryptor.transcrypt(in_a, b, a), c, b)
    direct = transcryptor.transcrypt(in_a, c, a)
    assert (
        via_b.public_key
        == direct.public_key
        == transcryptor.domain_public_key(c, keys.global_public_key)
    )
    assert decrypt(via_b, keys.domain_key(c)) == decrypt(direct, keys.domain_key(c))
    assert decrypt(direct, keys.domain_key(c)) == pseudonym_in(keys, transcryptor, bsn, c)


@FAST
@given(bsn=bsns(), domain=domains)
def test_transcryption_output_is_rerandomised(
    keys: FederationKeys, transcryptor: Transcryptor, bsn: str, domain: str
) -> None:
    ct = encrypt(subject_point("bsn", bsn), keys.global_public_key)
    first, second = transcryptor.transcrypt(ct, domain), transcryptor.transcrypt(ct, domain)
    assert first.b != second.b and first.c != second.c
    assert decrypt(first, keys.domain_key(domain)) == decrypt(second, keys.domain_key(domain))


@FAST
@given(bsn=bsns(), domain=domains)
def test_rerandomise_changes_ciphertext_not_plaintext(
    keys: FederationKeys, transcryptor: Transcryptor, bsn: str, domain: str
) -> None:
    ct = transcryptor.transcrypt(encrypt(subject_point("bsn", bsn), keys.global_public_key), domain)
    again = rerandomise(ct)
    assert again.public_key == ct.public_key
    assert again.b != ct.b and again.c != ct.c
    assert decrypt(again, keys.domain_key(domain)) == decrypt(ct, keys.domain_key(domain))


@FAST
@given(bsn=bsns(), domain=domains, wrong=domains)
def test_wrong_domain_key_never_yields_the_pseudonym(
    keys: FederationKeys, transcryptor: Transcryptor, bsn: str, domain: str, wrong: str
) -> None:
    if wrong == domain:
        return
    ct = transcryptor.transcrypt(encrypt(subject_point("bsn", bsn), keys.global_public_key), domain)
    right = decrypt(ct, keys.domain_key(domain))
    with pytest.raises(PseudonymError, match="does not match the ciphertext's public key"):
        decrypt(ct, keys.domain_key(wrong))
    # A ciphertext relabelled with the wrong domain's public key passes the key
    # check, and the arithmetic must still not give the right pseudonym.
    relabelled = Ciphertext(
        ct.b, ct.c, transcryptor.domain_public_key(wrong, keys.global_public_key)
    )
    assert decrypt(relabelled, keys.domain_key(wrong)) != right


@FAST
@given(bsn=bsns(), domain=domains)
def test_proto_and_bytes_round_trip(
    keys: FederationKeys, transcryptor: Transcryptor, bsn: str, domain: str
) -> None:
    ct = transcryptor.transcrypt(encrypt(subject_point("bsn", bsn), keys.global_public_key), domain)
    wire = ct.to_proto().SerializeToString()
    parsed = Ciphertext.from_proto(common_pb2.EncryptedPseudonym.FromString(wire))
    assert parsed == ct
    assert Ciphertext.from_bytes(ct.to_bytes()) == ct
    assert len(ct.to_bytes()) == 96
    assert decrypt(parsed, keys.domain_key(domain)) == decrypt(ct, keys.domain_key(domain))


@FAST
@given(
    id_type=st.from_regex(r"[a-z][a-z0-9_.-]{0,31}", fullmatch=True),
    value=st.text(
        alphabet=st.characters(codec="utf-8", categories=["L", "N", "P", "S"]),
        min_size=1,
        max_size=40,
    ),
)
def test_other_id_types_are_separate_namespaces(id_type: str, value: str) -> None:
    point = subject_point(id_type, value)
    assert len(point) == 32
    assert subject_point(id_type, value) == point
    other_type = "x" + id_type[:31] if id_type != "x" else "y"
    assert subject_point(other_type, value) != point


def test_domain_key_matches_transcryptor_public_key(
    keys: FederationKeys, transcryptor: Transcryptor
) -> None:
    material = keys.domain_key_material("politie-rotterdam")
    assert material.public_key == transcryptor.domain_public_key(
        "politie-rotterdam", keys.global_public_key
    )


def test_same_domain_transcryption_is_a_rerandomisation(
    keys: FederationKeys, transcryptor: Transcryptor
) -> None:
    ct = transcryptor.transcrypt(
        encrypt(subject_point("bsn", "123456782"), keys.global_public_key), "ggz-delfland"
    )
    same = transcryptor.transcrypt(ct, "ggz-delfland", "ggz-delfland")
    assert same != ct
    key = keys.domain_key("ggz-delfland")
    assert decrypt(same, key) == decrypt(ct, key)


def test_transcryptor_without_global_key_still_converts(keys: FederationKeys) -> None:
    plain = Transcryptor(keys.pseudonymisation_secret, keys.rekey_secret)
    ct = encrypt(subject_point("bsn", "111222333"), keys.global_public_key)
    checked = keys.transcryptor_keys().transcryptor()
    key = keys.domain_key("om-rotterdam")
    assert decrypt(plain.transcrypt(ct, "om-rotterdam"), key) == decrypt(
        checked.transcrypt(ct, "om-rotterdam"), key
    )


def test_pseudonym_hex_is_lowercase_hex(keys: FederationKeys, transcryptor: Transcryptor) -> None:
    text = pseudonym_hex(pseudonym_in(keys, transcryptor, "123456782", "zvh-rijnmond"))
    assert len(text) == 64 and text == text.lower() and bytes.fromhex(text)
