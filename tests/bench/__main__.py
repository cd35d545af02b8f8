"""Run every benchmark module and write bench-results/results.{md,json}.

Usage: ``make bench`` or ``python -m tests.bench [area ...]`` (``--help`` lists
the areas). Flame graphs of the case flows: ``make profile`` (tests/bench/profile.py).
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import os
import platform
import sys
import time
from pathlib import Path

from tests.bench.harness import Result

OUT = Path("bench-results")


def _machine() -> str:
    cpu = "unknown cpu"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, {platform.system()}"


def _load() -> str:
    """The 1, 5 and 15 minute load averages: other work on the machine during the run."""
    try:
        return " ".join(f"{x:.1f}" for x in os.getloadavg())
    except OSError:
        return "unknown"


def main() -> int:
    """Run the selected (default: all) benchmark modules."""
    here = Path(__file__).parent
    known = sorted(p.stem.removeprefix("bench_") for p in here.glob("bench_*.py"))
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("areas", nargs="*", help=f"areas to run (default all): {' '.join(known)}")
    args = parser.parse_args()
    unknown = set(args.areas) - set(known)
    if unknown:
        parser.error(f"unknown areas {sorted(unknown)}; known: {' '.join(known)}")
    names = args.areas or known
    results: list[Result] = []
    started = time.perf_counter()
    load_at_start = _load()
    for name in names:
        print(f"== {name}", flush=True)
        area_started = time.perf_counter()
        module = importlib.import_module(f"tests.bench.bench_{name}")
        for result in module.run():
            results.append(result)
            print(f"   {result.name}: {result.value:,.1f} {result.unit}", flush=True)
        print(f"   ({name} took {time.perf_counter() - area_started:.0f} s)", flush=True)
    by_name = {(r.area, r.name): r for r in results}
    for r in results:
        base = by_name.get((r.area, r.baseline)) if r.baseline else None
        if base and base.value:
            r.ratio = r.value / base.value
    OUT.mkdir(exist_ok=True)
    machine = _machine()
    (OUT / "results.json").write_text(
        json.dumps(
            {"machine": machine, "results": [dataclasses.asdict(r) for r in results]}, indent=2
        )
    )
    took = time.perf_counter() - started
    lines = [
        f"Machine: {machine}; load average (1, 5, 15 min) {load_at_start} at the start, "
        f"{_load()} at the end; took {took:.0f} s",
        "",
        "| area | benchmark | value | unit | p50 ms | p99 ms | vs baseline | notes |",
        "|---|---|---:|---|---:|---:|---:|---|",
    ]
    for r in results:
        ratio = f"{r.ratio:.3f}x {r.baseline}" if r.ratio is not None else ""
        p50 = f"{r.extra['p50_ms']:.1f}" if "p50_ms" in r.extra else ""
        p99 = f"{r.extra['p99_ms']:.1f}" if "p99_ms" in r.extra else ""
        lines.append(
            f"| {r.area} | {r.name} | {r.value:,.1f} | {r.unit} | {p50} | {p99} | {ratio} "
            f"| {r.notes} |"
        )
    (OUT / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
