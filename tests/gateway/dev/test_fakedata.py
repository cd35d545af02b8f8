"""The one fake-BSN generator: reproducible, distinct, and valid by the one elfproef."""

from __future__ import annotations

from gateway.dev.fakedata import fake_bsns
from policy.pseudonyms import is_valid_bsn


def test_fake_bsns_are_distinct_valid_and_reproducible() -> None:
    made = fake_bsns(500, seed=3)
    assert len(set(made)) == 500
    assert all(is_valid_bsn(bsn) for bsn in made)
    assert fake_bsns(500, seed=3) == made
    assert fake_bsns(500, seed=4) != made


def test_an_excluded_bsn_is_never_made() -> None:
    first = fake_bsns(1, seed=3)[0]
    assert first not in fake_bsns(50, seed=3, exclude={first})
    assert fake_bsns(50, seed=3, exclude={first})[:10] == fake_bsns(51, seed=3)[1:11]
