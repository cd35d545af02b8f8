"""Shared strategies and keys for the pseudonym tests."""

from __future__ import annotations

import pytest
from hypothesis import assume
from hypothesis import strategies as st

from policy.pseudonyms import FederationKeys, Transcryptor

WEIGHTS = (9, 8, 7, 6, 5, 4, 3, 2)


def bsn_from(first_eight: str) -> str | None:
    """Complete eight digits to an elfproef-valid BSN, or None when no check digit fits."""
    check = sum(w * int(d) for w, d in zip(WEIGHTS, first_eight, strict=True)) % 11
    if check == 10 or first_eight + str(check) == "000000000":
        return None
    return first_eight + str(check)


@st.composite
def bsns(draw: st.DrawFn) -> str:
    """Elfproef-valid BSNs."""
    bsn = bsn_from(draw(st.text(alphabet="0123456789", min_size=8, max_size=8)))
    assume(bsn is not None)
    assert bsn is not None
    return bsn


domains = st.text(
    alphabet=st.sampled_from("abcdefghijklmnopqrstuvwxyz0123456789-âëï"), min_size=1, max_size=24
)


@pytest.fixture(scope="session")
def keys() -> FederationKeys:
    """One federation for the whole session: key generation is not what is tested here."""
    return FederationKeys.generate()


@pytest.fixture(scope="session")
def transcryptor(keys: FederationKeys) -> Transcryptor:
    """The node-side transcryptor of ``keys``, checking source keys against Y."""
    return keys.transcryptor_keys().transcryptor()
