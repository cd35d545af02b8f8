"""Generated test data: elfproef-valid fake BSNs and simulated partner sources.

Everything is made from a seeded random generator, so a failing test can be
re-run with the same data. The BSNs are random, not real people's.
"""

from __future__ import annotations

import random

from policy.pseudonyms import is_valid_bsn

_WEIGHTS = (9, 8, 7, 6, 5, 4, 3, 2)


def fake_bsn(rng: random.Random) -> str:
    """A random nine-digit number that passes the elfproef."""
    while True:
        digits = [rng.randrange(10) for _ in range(8)]
        if digits[0] == 0:
            continue
        last = sum(w * d for w, d in zip(_WEIGHTS, digits, strict=True)) % 11
        if last < 10:
            value = "".join(map(str, digits)) + str(last)
            assert is_valid_bsn(value)
            return value


def fake_bsns(count: int, seed: int = 7) -> list[str]:
    """``count`` distinct fake BSNs."""
    rng = random.Random(seed)
    out: dict[str, None] = {}
    while len(out) < count:
        out[fake_bsn(rng)] = None
    return list(out)


def invalid_bsn(rng: random.Random) -> str:
    """Nine digits that fail the elfproef."""
    while True:
        value = f"{rng.randrange(100_000_000, 1_000_000_000)}"
        if not is_valid_bsn(value):
            return value
