"""Distributed transcryption: a chain of one is the single scheme byte for byte; chains of
two and three give every domain its pseudonym; every link rerandomises."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from policy.pseudonyms import (
    Ciphertext,
    FederationKeys,
    decrypt,
    encrypt,
    subject_point,
)
from policy.pseudonyms.ceremony import run_ceremony
from policy.pseudonyms.chain import LocalChain
from policy.pseudonyms.hazmat import group
from policy.pseudonyms.hazmat.conversion import Converter
from policy.pseudonyms.hazmat.factors import pseudonymisation_factor
from policy.pseudonyms.shares import TranscryptorShare
from tests.support.paths import ROOT
from tests.support.pseudonyms import bsns, domains

FAST = settings(max_examples=30, deadline=None)
VECTORS = ROOT / "policy" / "pseudonyms" / "test_vectors.json"


def chain_of(n: int) -> LocalChain:
    shares = tuple(TranscryptorShare.generate(f"tc-{i}") for i in range(n))
    return LocalChain(shares, run_ceremony(shares).global_public_key)


@pytest.fixture(scope="module")
def chains() -> dict[int, LocalChain]:
    return {n: chain_of(n) for n in (2, 3)}


def product_factor(chain: LocalChain, domain: str) -> bytes:
    s = bytes([1]) + bytes(31)
    for share in chain.shares:
        s = group.scalar_mul(s, pseudonymisation_factor(share.pseudonymisation_secret, domain))
    return s


def test_a_chain_of_one_reproduces_the_published_vectors() -> None:
    vectors: dict[str, Any] = json.loads(VECTORS.read_text(encoding="utf-8"))
    keys = FederationKeys(
        bytes.fromhex(vectors["global_secret_key"]),
        bytes.fromhex(vectors["global_public_key"]),
        bytes.fromhex(vectors["pseudonymisation_secret"]),
        bytes.fromhex(vectors["rekey_secret"]),
    )
    share = TranscryptorShare.from_single("tc-enige", keys)
    transcript = run_ceremony([share])
    assert transcript.global_public_key == keys.global_public_key
    chain = LocalChain((share,), transcript.global_public_key)
    converter = Converter(share.pseudonymisation_secret, share.rekey_secret)
    for d in vectors["domains"]:
        key = chain.domain_key(d["domain"])
        assert key.secret_key.hex() == d["domain_secret_key"]
        assert key.public_key.hex() == d["domain_public_key"]
    for subject in vectors["subjects"]:
        ct = Ciphertext.from_bytes(bytes.fromhex(subject["ciphertext"]))
        for per in subject["per_domain"]:
            moved = converter.reshuffle_rekey(ct, per["domain"], None)
            assert moved.to_bytes().hex() == per["transcrypted"]
            final = chain.transcrypt(ct, per["domain"])
            assert (
                decrypt(final, chain.domain_key(per["domain"]).secret_key).hex()
                == (per["pseudonym"])
            )


@FAST
@given(bsn=bsns(), domain=domains)
def test_a_chain_of_one_is_the_single_scheme(keys: FederationKeys, bsn: str, domain: str) -> None:
    share = TranscryptorShare.from_single("tc-enige", keys)
    chain = LocalChain((share,), keys.global_public_key)
    assert chain.domain_key(domain) == keys.domain_key_material(domain)
    ct = encrypt(subject_point("bsn", bsn), keys.global_public_key)
    single = keys.transcryptor_keys().transcryptor().transcrypt(ct, domain)
    chained = chain.transcrypt(ct, domain)
    key = keys.domain_key(domain)
    assert decrypt(chained, key) == decrypt(single, key)
    converter = Converter(keys.pseudonymisation_secret, keys.rekey_secret)
    assert share.step()._converter.reshuffle_rekey(ct, domain) == converter.reshuffle_rekey(
        ct, domain
    )


@FAST
@given(n=st.sampled_from([2, 3]), bsn=bsns(), a=domains, b=domains)
def test_chains_of_two_and_three_give_every_pair_of_domains_its_pseudonyms(
    chains: dict[int, LocalChain], n: int, bsn: str, a: str, b: str
) -> None:
    chain = chains[n]
    point = subject_point("bsn", bsn)
    ct = encrypt(point, chain.global_public_key)
    in_a = chain.transcrypt(ct, a)
    key_a, key_b = chain.domain_key(a), chain.domain_key(b)
    assert in_a.public_key == key_a.public_key
    assert decrypt(in_a, key_a.secret_key) == group.mul(product_factor(chain, a), point, "")
    in_b = chain.transcrypt(in_a, b, a)
    assert in_b.public_key == key_b.public_key
    assert decrypt(in_b, key_b.secret_key) == group.mul(product_factor(chain, b), point, "")
    assert decrypt(in_b, key_b.secret_key) == decrypt(chain.transcrypt(ct, b), key_b.secret_key)


@settings(max_examples=10, deadline=None)
@given(n=st.sampled_from([1, 2, 3]), bsn=bsns(), domain=domains)
def test_rerandomisation_leaves_no_two_outputs_equal(
    chains: dict[int, LocalChain], n: int, bsn: str, domain: str
) -> None:
    chain = chains[n] if n > 1 else chain_of(1)
    ct = encrypt(subject_point("bsn", bsn), chain.global_public_key)
    outputs = [chain.transcrypt(ct, domain) for _ in range(20)]
    parts = [o.b for o in outputs] + [o.c for o in outputs] + [ct.b, ct.c]
    assert len(set(parts)) == len(parts)
    key = chain.domain_key(domain).secret_key
    assert len({decrypt(o, key) for o in outputs}) == 1


def test_each_link_rerandomises_its_own_output(chains: dict[int, LocalChain]) -> None:
    """Two runs of one link on one input differ, so no link's output can be matched to
    its input by recomputing the conversion."""
    chain = chains[2]
    ct = encrypt(subject_point("bsn", "111222333"), chain.global_public_key)
    link = chain.shares[0].step()
    first, second = link.transcrypt(ct, "politie-rr"), link.transcrypt(ct, "politie-rr")
    assert first.public_key == second.public_key
    assert first.b != second.b and first.c != second.c
