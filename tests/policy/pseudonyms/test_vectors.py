"""Known answers: the published vectors must keep holding, so stored pseudonyms stay valid.

Scalar values are recomputed with Python integers and the standard library's
HMAC, independently of libsodium; point values with libsodium, whose
ristretto255 encoding is pinned to RFC 9496 by the first test.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

import pysodium
import pytest

from policy.pseudonyms import Ciphertext, Transcryptor, decrypt, subject_point
from policy.pseudonyms.hazmat.conversion import Converter
from policy.pseudonyms.hazmat.elgamal import encrypt_with, rerandomise_with
from policy.pseudonyms.vectors import build_vectors
from tests.support.paths import ROOT

VECTORS = ROOT / "policy" / "pseudonyms" / "test_vectors.json"
ORDER = 2**252 + 27742317777372353535851937790883648493
# RFC 9496 appendix A.1: encodings of 0B, 1B, 2B, 3B.
SMALL_MULTIPLES = [
    "0000000000000000000000000000000000000000000000000000000000000000",
    "e2f2ae0a6abc4e71a884a961c500515f58e30b6aa582dd8db6a65945e08d2d76",
    "6a493210f7499cd17fecb510ae0cea23a110e8d5b901f8acadd3095c73a3b919",
    "94741f5d5d52755ece4f23f044ee27d5d1ea1e2bd196b462166b16152a9d0259",
]


@pytest.fixture(scope="module")
def vectors() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(VECTORS.read_text(encoding="utf-8"))
    return data


def scalar(n: int) -> bytes:
    return (n % ORDER).to_bytes(32, "little")


def as_int(hex_scalar: str) -> int:
    return int.from_bytes(bytes.fromhex(hex_scalar), "little")


def hs(secret: bytes, label: bytes) -> int:
    return int.from_bytes(hmac.digest(secret, label, "sha512"), "little") % ORDER


def test_libsodium_encodes_ristretto255_as_rfc_9496() -> None:
    for n, expected in enumerate(SMALL_MULTIPLES[1:], start=1):
        assert pysodium.crypto_scalarmult_ristretto255_base(scalar(n)).hex() == expected


def test_committed_file_is_what_the_code_generates(vectors: dict[str, Any]) -> None:
    assert build_vectors() == vectors


def test_domain_factors_and_keys(vectors: dict[str, Any]) -> None:
    ps = bytes.fromhex(vectors["pseudonymisation_secret"])
    rs = bytes.fromhex(vectors["rekey_secret"])
    y = as_int(vectors["global_secret_key"])
    assert (
        pysodium.crypto_scalarmult_ristretto255_base(scalar(y)).hex()
        == (vectors["global_public_key"])
    )
    assert len(vectors["domains"]) >= 3
    for entry in vectors["domains"]:
        d = entry["domain"].encode("utf-8")
        s_d = hs(ps, b"schakel/v1/pseudonymise|" + d)
        k_d = hs(rs, b"schakel/v1/rekey|" + d)
        assert as_int(entry["pseudonymisation_factor"]) == s_d
        assert as_int(entry["rekey_factor"]) == k_d
        assert as_int(entry["domain_secret_key"]) == k_d * y % ORDER
        assert (
            pysodium.crypto_scalarmult_ristretto255_base(scalar(k_d * y)).hex()
            == entry["domain_public_key"]
        )


def test_subjects_ciphertexts_and_pseudonyms(vectors: dict[str, Any]) -> None:
    ps = bytes.fromhex(vectors["pseudonymisation_secret"])
    rs = bytes.fromhex(vectors["rekey_secret"])
    big_y = bytes.fromhex(vectors["global_public_key"])
    domains = {e["domain"]: e for e in vectors["domains"]}
    transcryptor = Transcryptor(ps, rs, global_public_key=big_y)
    converter = Converter(ps, rs, global_public_key=big_y)
    for subject in vectors["subjects"]:
        label = b"schakel/v1/subject\x00" + subject["id_type"].encode() + b"\x00"
        digest = hashlib.sha512(label + subject["id_value"].encode("utf-8")).digest()
        point = pysodium.crypto_core_ristretto255_from_hash(digest)
        assert point.hex() == subject["subject_point"]
        assert subject_point(subject["id_type"], subject["id_value"]) == point
        r = bytes.fromhex(subject["encryption_randomness"])
        ct = encrypt_with(point, big_y, r)
        assert ct.to_bytes().hex() == subject["ciphertext"]
        assert ct.b == pysodium.crypto_scalarmult_ristretto255_base(r)
        rerandomised = rerandomise_with(ct, bytes.fromhex(subject["rerandomisation_randomness"]))
        assert rerandomised.to_bytes().hex() == subject["rerandomised"]
        for entry in subject["per_domain"]:
            domain = domains[entry["domain"]]
            s_d = as_int(domain["pseudonymisation_factor"])
            assert (
                pysodium.crypto_scalarmult_ristretto255(scalar(s_d), point).hex()
                == (entry["pseudonym"])
            )
            converted = converter.reshuffle_rekey(ct, entry["domain"], None)
            assert converted.to_bytes().hex() == entry["transcrypted"]
            key = bytes.fromhex(domain["domain_secret_key"])
            forms = (
                converted,
                transcryptor.transcrypt(ct, entry["domain"]),
                transcryptor.transcrypt(rerandomised, entry["domain"]),
            )
            for form in forms:
                assert decrypt(form, key).hex() == entry["pseudonym"]
        hop = subject["domain_to_domain"]
        source = Ciphertext.from_bytes(bytes.fromhex(hop["input"]))
        output = converter.reshuffle_rekey(source, hop["to"], hop["from"])
        assert output.to_bytes().hex() == hop["output"]
        target = domains[hop["to"]]
        expected = next(e for e in subject["per_domain"] if e["domain"] == hop["to"])
        assert (
            decrypt(output, bytes.fromhex(target["domain_secret_key"])).hex()
            == (expected["pseudonym"])
        )
