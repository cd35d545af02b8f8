"""Made-up people for the dev federation and the tests: elfproef-valid fake BSNs.

Every number comes from a seeded random generator, so the same seed gives the
same people and a failing test can be re-run with the same data. The numbers
pass the one elfproef (:func:`policy.pseudonyms.is_valid_bsn`); they are
random, not real people's.
"""

from __future__ import annotations

import random
from collections.abc import Container

from policy.pseudonyms import is_valid_bsn

_CHECK_DIGITS = "0123456789"


def _fake_bsn(rng: random.Random) -> str:
    """Eight random digits (the first not 0) completed by the check digit that fits, if any."""
    while True:
        digits = [rng.randrange(10) for _ in range(8)]
        if digits[0] == 0:
            continue
        prefix = "".join(map(str, digits))
        # At most one check digit passes; for a tenth of the prefixes none does.
        for check in _CHECK_DIGITS:
            if is_valid_bsn(prefix + check):
                return prefix + check


def fake_bsns(count: int, seed: int = 7, *, exclude: Container[str] = ()) -> list[str]:
    """``count`` distinct fake BSNs made from ``seed``, in the order made, none in ``exclude``."""
    rng = random.Random(seed)  # noqa: S311 - made-up data, reproducible, not a secret
    made: dict[str, None] = {}
    while len(made) < count:
        bsn = _fake_bsn(rng)
        if bsn not in exclude:
            made[bsn] = None
    return list(made)
