"""Known answers for a chain of two transcryptors: recomputed from the definitions.

Scalars are recomputed with Python integers and the standard library's HMAC
(products of the links' factors, the key shares and the domain factors);
points with libsodium, link by link, and every pseudonym must equal
``s_d * M`` with ``s_d`` the product of the links' factors.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

import pysodium
import pytest

from policy.pseudonyms import Ciphertext, decrypt, subject_point
from policy.pseudonyms.ceremony import Transcript
from policy.pseudonyms.hazmat.conversion import Converter
from policy.pseudonyms.hazmat.elgamal import encrypt_with, rerandomise_with
from policy.pseudonyms.vectors_chain import build_vectors
from tests.support.paths import ROOT

VECTORS = ROOT / "policy" / "pseudonyms" / "test_vectors_chain.json"
ORDER = 2**252 + 27742317777372353535851937790883648493


@pytest.fixture(scope="module")
def vectors() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(VECTORS.read_text(encoding="utf-8"))
    return data


def as_int(hex_scalar: str) -> int:
    return int.from_bytes(bytes.fromhex(hex_scalar), "little")


def scalar(n: int) -> bytes:
    return (n % ORDER).to_bytes(32, "little")


def hs(secret: bytes, label: bytes) -> int:
    return int.from_bytes(hmac.digest(secret, label, "sha512"), "little") % ORDER


def test_committed_file_is_what_the_code_generates(vectors: dict[str, Any]) -> None:
    assert build_vectors() == vectors


def test_the_ceremony_gives_y_as_the_product_of_the_shares(vectors: dict[str, Any]) -> None:
    y = 1
    for t in vectors["transcryptors"]:
        y = y * as_int(t["key_share"]) % ORDER
    big_y = pysodium.crypto_scalarmult_ristretto255_base(scalar(y)).hex()
    assert big_y == vectors["global_public_key"]
    transcript = Transcript.from_document(vectors["ceremony"])
    assert transcript.global_public_key.hex() == big_y
    assert transcript.transcryptors == [t["transcryptor"] for t in vectors["transcryptors"]]


def test_domain_factors_and_keys(vectors: dict[str, Any]) -> None:
    links = vectors["transcryptors"]
    for d in vectors["domains"]:
        label = d["domain"].encode()
        key = 1
        for link, per in zip(links, d["per_transcryptor"], strict=True):
            ps, rs = (
                bytes.fromhex(link["pseudonymisation_secret"]),
                bytes.fromhex(link["rekey_secret"]),
            )
            s = hs(ps, b"schakel/v1/pseudonymise|" + label)
            k = hs(rs, b"schakel/v1/rekey|" + label)
            assert as_int(per["pseudonymisation_factor"]) == s
            assert as_int(per["rekey_factor"]) == k
            assert as_int(per["domain_factor"]) == k * as_int(link["key_share"]) % ORDER
            key = key * as_int(per["domain_factor"]) % ORDER
        assert as_int(d["domain_secret_key"]) == key
        assert (
            pysodium.crypto_scalarmult_ristretto255_base(scalar(key)).hex()
            == (d["domain_public_key"])
        )


def test_every_link_and_every_pseudonym(vectors: dict[str, Any]) -> None:
    links = vectors["transcryptors"]
    converters = [
        Converter(bytes.fromhex(t["pseudonymisation_secret"]), bytes.fromhex(t["rekey_secret"]))
        for t in links
    ]
    big_y = bytes.fromhex(vectors["global_public_key"])
    domains = {d["domain"]: d for d in vectors["domains"]}
    for subject in vectors["subjects"]:
        point = subject_point(subject["id_type"], subject["id_value"])
        assert point.hex() == subject["subject_point"]
        ct = encrypt_with(point, big_y, bytes.fromhex(subject["encryption_randomness"]))
        assert ct.to_bytes().hex() == subject["ciphertext"]
        for per in subject["per_domain"]:
            domain = per["domain"]
            current = ct
            for converter, link in zip(converters, per["links"], strict=True):
                converted = converter.reshuffle_rekey(current, domain, None)
                assert converted.to_bytes().hex() == link["converted"]
                current = rerandomise_with(
                    converted, bytes.fromhex(link["rerandomisation_randomness"])
                )
                assert current.to_bytes().hex() == link["output"]
            assert current.public_key.hex() == domains[domain]["domain_public_key"]
            key = bytes.fromhex(domains[domain]["domain_secret_key"])
            final = Ciphertext.from_bytes(bytes.fromhex(per["links"][-1]["output"]))
            assert decrypt(final, key).hex() == per["pseudonym"]
            s_d = 1
            for factor in domains[domain]["per_transcryptor"]:
                s_d = s_d * as_int(factor["pseudonymisation_factor"]) % ORDER
            assert (
                pysodium.crypto_scalarmult_ristretto255(scalar(s_d), point).hex()
                == (per["pseudonym"])
            )


def test_inputs_come_from_fixed_labels(vectors: dict[str, Any]) -> None:
    first = vectors["transcryptors"][0]
    name = first["transcryptor"]
    assert (
        first["pseudonymisation_secret"]
        == hashlib.sha256(f"schakel/v1 chain vector: PS {name}".encode()).hexdigest()
    )
