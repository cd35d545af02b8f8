"""Small benchmark harness: medians of repeated runs, rates and ratios.

Benchmarks are not tests: they run from ``make bench`` and report numbers.
Each ``tests/bench/bench_*.py`` module exposes ``run() -> list[Result]``.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Result:
    """One measured quantity."""

    area: str
    name: str
    value: float
    unit: str
    baseline: str = ""
    """Name of the result this one is compared with (same area, same run)."""
    ratio: float | None = None
    """value / baseline value, filled in by the runner."""
    notes: str = ""
    extra: dict[str, float] = field(default_factory=dict)


def median_rate(fn: Callable[[], object], ops: int, repeats: int = 5) -> float:
    """Median operations per second of ``fn``, which performs ``ops`` operations per call."""
    fn()  # warm caches and lazy imports before measuring
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        rates.append(ops / (time.perf_counter() - start))
    return statistics.median(rates)


def median_seconds(fn: Callable[[], object], repeats: int = 5) -> float:
    """Median wall time of one call of ``fn``, in seconds."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)
