"""The per-caller token bucket, on a set clock."""

from __future__ import annotations

import pytest

from gateway.errors import ExhaustedError
from gateway.transcryptor.ratelimit import RateLimiter


def test_a_bucket_refills_at_its_rate_and_callers_do_not_share() -> None:
    now = [0.0]
    limiter = RateLimiter(100.0, 500, clock=lambda: now[0])
    limiter.take("a", 500)
    with pytest.raises(ExhaustedError, match=r"retry in 0\.1 s"):
        limiter.take("a", 10)
    limiter.take("b", 500)
    now[0] = 0.1
    limiter.take("a", 10)
    with pytest.raises(ExhaustedError):
        limiter.take("a", 1)
    now[0] = 100.0
    limiter.take("a", 500)  # full again, never above the burst
    with pytest.raises(ExhaustedError):
        limiter.take("a", 1)


def test_a_call_larger_than_the_burst_is_always_refused() -> None:
    limiter = RateLimiter(1000.0, 100, clock=lambda: 0.0)
    with pytest.raises(ExhaustedError):
        limiter.take("a", 101)
    limiter.take("a", 100)
