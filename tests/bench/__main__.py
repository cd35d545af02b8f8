"""Run every benchmark module and write bench-results/results.{md,json}.

Usage: ``make bench`` or ``python -m tests.bench [area ...]``.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import os
import platform
import sys
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


def main() -> int:
    """Run the selected (default: all) benchmark modules."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("areas", nargs="*", help="modules to run, e.g. pseudonyms policy audit")
    args = parser.parse_args()
    here = Path(__file__).parent
    names = args.areas or sorted(p.stem.removeprefix("bench_") for p in here.glob("bench_*.py"))
    results: list[Result] = []
    for name in names:
        print(f"== {name}", flush=True)
        module = importlib.import_module(f"tests.bench.bench_{name}")
        for result in module.run():
            results.append(result)
            print(f"   {result.name}: {result.value:,.1f} {result.unit}", flush=True)
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
    lines = [f"Machine: {machine}", "", "| area | benchmark | value | unit | vs baseline | notes |"]
    lines.append("|---|---|---:|---|---:|---|")
    for r in results:
        ratio = f"{r.ratio:.3f}x {r.baseline}" if r.ratio is not None else ""
        lines.append(f"| {r.area} | {r.name} | {r.value:,.1f} | {r.unit} | {ratio} | {r.notes} |")
    (OUT / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
