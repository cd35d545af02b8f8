"""The partner SDK helpers: identifiers in, hex pseudonyms out, no group elements."""

from __future__ import annotations

import pytest

from adapters.sdk import decrypt_subject, encrypt_subject
from policy.pseudonyms import Ciphertext, FederationKeys, PseudonymError, Transcryptor


def test_partner_round_trip_through_a_node(
    keys: FederationKeys, transcryptor: Transcryptor
) -> None:
    sent = encrypt_subject("bsn", "123456782", keys.global_public_key)
    again = encrypt_subject("bsn", "123456782", keys.global_public_key)
    assert sent.public_key == keys.global_public_key
    assert sent != again
    results = []
    for msg in (sent, again):
        moved = transcryptor.transcrypt(Ciphertext.from_proto(msg), "reclassering-rotterdam")
        results.append(decrypt_subject(moved.to_proto(), keys.domain_key("reclassering-rotterdam")))
    assert results[0] == results[1]
    assert len(results[0]) == 64 and int(results[0], 16) >= 0
    other = transcryptor.transcrypt(Ciphertext.from_proto(sent), "gemeente-rotterdam")
    assert decrypt_subject(other.to_proto(), keys.domain_key("gemeente-rotterdam")) != results[0]


def test_sdk_refuses_bad_bsn_and_key(keys: FederationKeys) -> None:
    with pytest.raises(PseudonymError, match="elfproef") as info:
        encrypt_subject("bsn", "123456789", keys.global_public_key)
    assert "123456789" not in str(info.value)
    with pytest.raises(PseudonymError, match="public key must be 32 bytes, got 3"):
        encrypt_subject("bsn", "123456782", b"abc")
