"""Small benchmark harness: medians of repeated runs, rates and ratios.

Benchmarks are not tests: they run from ``make bench`` and report numbers.
Each ``tests/bench/bench_*.py`` module exposes ``run() -> list[Result]``.
"""

from __future__ import annotations

import asyncio
import io
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from gateway.logging import configure_logging


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


def latency_results(
    area: str,
    measured: dict[str, dict[str, float]],
    notes: dict[str, str],
    in_flight: dict[str, int],
) -> list[Result]:
    """Request-rate results against the ``baseline`` entry, each noting its p50/p99 latency.

    ``measured[name]`` holds ``rate`` plus ``p50_ms``/``p99_ms`` (kept as extras).
    """
    out = []
    for name, values in measured.items():
        extra = dict(values)
        rate = extra.pop("rate")
        out.append(
            Result(
                area,
                name,
                rate,
                "requests/s",
                baseline="" if name == "baseline" else "baseline",
                notes=(
                    f"{notes[name]}; rate with {in_flight[name]} in flight; p50/p99 "
                    f"{extra['p50_ms']:.1f}/{extra['p99_ms']:.1f} ms one at a time"
                ),
                extra=extra,
            )
        )
    return out


Call = Callable[[], Awaitable[object]]
"""One asynchronous request of a load benchmark."""


async def measure_calls(call: Call, total: int, in_flight: int) -> tuple[float, list[float]]:
    """Calls/s of ``total`` calls with ``in_flight`` at a time, and each call's latency (s)."""
    latencies: list[float] = []
    queue = iter(range(total))

    async def worker() -> None:
        for _ in queue:
            start = time.perf_counter()
            await call()
            latencies.append(time.perf_counter() - start)

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(in_flight)))
    return total / (time.perf_counter() - start), latencies


def percentiles_ms(latencies: list[float]) -> tuple[float, float]:
    """p50 and p99 of ``latencies`` (seconds), in milliseconds."""
    cuts = statistics.quantiles(latencies, n=100)
    return cuts[49] * 1000, cuts[98] * 1000


def run_in_temp_dir(
    bench: Callable[[Path], Awaitable[list[Result]]], log_level: str = "info"
) -> list[Result]:
    """Run ``bench(tmp)`` on a fresh event loop with a temporary directory.

    Logs at ``log_level`` are rendered as in production, then dropped. The loop
    is made current because gRPC binds a channel to the loop it is made on.
    """
    configure_logging(log_level, stream=io.StringIO())
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            return loop.run_until_complete(bench(Path(tmp)))
    finally:
        loop.close()
