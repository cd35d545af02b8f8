"""A token bucket per caller, counted in subjects: how fast one node may have subjects converted.

Each caller's bucket holds up to ``burst`` tokens and refills at ``rate`` per
second; a call converting ``n`` subjects takes ``n`` tokens or is refused
whole. A bulk re-identification (guessing BSNs and converting each guess to
a domain whose key the caller holds) needs one conversion per guess, so a
transcryptor that refuses it stops the attack for the whole chain.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from gateway.errors import ExhaustedError

MAX_CALLERS = 10_000
"""Buckets kept; a full table forgets the fullest buckets, which lose nothing by it."""


@dataclass
class _Bucket:
    tokens: float
    at: float


class RateLimiter:
    """Token buckets keyed by caller identity; use from one event loop."""

    def __init__(
        self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}

    def _bucket(self, caller: str, now: float) -> _Bucket:
        bucket = self._buckets.get(caller)
        if bucket is None:
            if len(self._buckets) >= MAX_CALLERS:
                self._forget_full(now)
            bucket = self._buckets[caller] = _Bucket(float(self.burst), now)
        bucket.tokens = min(float(self.burst), bucket.tokens + (now - bucket.at) * self.rate)
        bucket.at = now
        return bucket

    def _forget_full(self, now: float) -> None:
        for key, b in list(self._buckets.items()):
            if b.tokens + (now - b.at) * self.rate >= self.burst:
                del self._buckets[key]

    def take(self, caller: str, count: int) -> None:
        """Take ``count`` tokens from ``caller``'s bucket; ExhaustedError when too few are left."""
        bucket = self._bucket(caller, self._clock())
        if count > bucket.tokens:
            wait = (count - bucket.tokens) / self.rate
            raise ExhaustedError(
                f"the rate limit of {self.rate:g} subjects/s (burst {self.burst}) of "
                f"{caller} is used up at this transcryptor; retry in {wait:.1f} s"
            )
        bucket.tokens -= count
