"""Nobody short of every transcryptor together can compute the global secret y.

With the single scheme a node's files gave it y in one step:
``y = y_d * k_d^-1`` with ``k_d`` derived from the RS it held. With the
secrets spread over a chain, a node's domain key plus the secrets of all
transcryptors but one leave a factor ``k_{d,i} * y_i`` unknown, and no
quotient those files allow gives y.
"""

from __future__ import annotations

import itertools

import pytest

from policy.pseudonyms import FederationKeys
from policy.pseudonyms.ceremony import run_ceremony
from policy.pseudonyms.chain import LocalChain
from policy.pseudonyms.hazmat import group
from policy.pseudonyms.hazmat.factors import rekey_factor
from policy.pseudonyms.shares import TranscryptorShare

NODE = "zvh-rotterdam-rijnmond"
ONE = bytes([1]) + bytes(31)


def product(scalars: list[bytes]) -> bytes:
    out = ONE
    for s in scalars:
        out = group.scalar_mul(out, s)
    return out


def candidates(y_d: bytes, known: list[TranscryptorShare], domain: str) -> list[bytes]:
    """Every quotient of y_d by what the known shares allow: their k_{d,j}, their y_j,
    and the products of any subset of those."""
    parts = [rekey_factor(s.rekey_secret, domain) for s in known]
    parts += [s.require_key_share() for s in known]
    out = []
    for size in range(len(parts) + 1):
        for subset in itertools.combinations(parts, size):
            out.append(group.scalar_mul(y_d, group.scalar_invert(product(list(subset)), "")))
    return out


def test_the_single_scheme_gave_a_node_y(keys: FederationKeys) -> None:
    """The attack the chain stops: it works against the single scheme, so the test can fail."""
    y_d = keys.domain_key(NODE)
    k_d = rekey_factor(keys.rekey_secret, NODE)
    y = group.scalar_mul(y_d, group.scalar_invert(k_d, ""))
    assert group.mul_base(y, "") == keys.global_public_key


@pytest.mark.parametrize("n", [2, 3])
def test_a_node_with_all_but_one_transcryptors_secrets_cannot_compute_y(n: int) -> None:
    shares = tuple(TranscryptorShare.generate(f"tc-{i}") for i in range(n))
    chain = LocalChain(shares, run_ceremony(shares).global_public_key)
    y_d = chain.domain_key(NODE).secret_key
    for missing in range(n):
        known = [s for i, s in enumerate(shares) if i != missing]
        for guess in candidates(y_d, known, NODE):
            assert group.mul_base(guess, "") != chain.global_public_key
        # What is left is exactly the missing transcryptor's factor for this domain.
        rest = group.scalar_mul(
            y_d,
            group.scalar_invert(
                product([s.domain_factor(NODE, chain.global_public_key).factor for s in known]),
                "",
            ),
        )
        assert rest == shares[missing].domain_factor(NODE, chain.global_public_key).factor
    everything = candidates(y_d, list(shares), NODE)
    assert any(group.mul_base(g, "") == chain.global_public_key for g in everything)
