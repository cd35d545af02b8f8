"""Flame graphs of the three flows, and where their time goes, with py-spy.

Usage: ``make profile`` (``ARGS='--label after round'``) or
``python -m tests.bench.profile [--label LABEL] [--seconds S] [flow ...]``.

Each flow is set up exactly as its benchmark row (:func:`flow_calls`), then
called with 8 in flight while py-spy samples this process for ``S`` seconds,
twice: once into ``bench-results/flame-<flow>-<label>.svg`` and once as
collapsed stacks, from which ``bench-results/profile-<label>.md`` lists the
biggest costs. Only the thread holding the GIL is sampled (``--gil``):
Python's own CPU, not threads that wait on a queue, a lock or the disk.
Client, node, peer node and simulated partners share this
process (as in the benchmark), so the graphs show all of them; the node's
own part is under ``gateway/``.

py-spy attaches to this process by id, so it needs ptrace permission over
it: root, or ``kernel.yama.ptrace_scope = 0``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

from tests.bench.bench_caseflow import case_calls
from tests.bench.bench_flow import hitnohit_call
from tests.bench.harness import Call, run_in_temp_dir
from tests.support.cluster import start_cluster, stop_cluster

OUT = Path("bench-results")
FLOWS = ("hitnohit", "round", "uitvraag")
IN_FLIGHT = 8
RATE = 100
"""Samples per second."""


@contextlib.asynccontextmanager
async def flow_calls(root: Path, flow: str) -> AsyncIterator[Call]:
    """The running nodes of ``flow``'s benchmark row, and its call."""
    if flow == "hitnohit":
        cluster = await start_cluster(root, ["zvh-00", "zvh-01"])
        try:
            call, channel = hitnohit_call(cluster, "zvh-00", "zvh-01")
            try:
                yield call
            finally:
                await channel.close(None)
        finally:
            await stop_cluster(cluster)
    else:
        async with case_calls(root) as calls:
            yield calls[flow]


def _py_spy() -> str:
    found = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(found).exists():
        raise SystemExit("py-spy not found: pip install py-spy (the dev extra has it)")
    return found


async def _sample(call: Call, seconds: float, out: Path, fmt: str) -> None:
    """Keep ``IN_FLIGHT`` calls going while py-spy records this process into ``out``."""
    spy = await asyncio.create_subprocess_exec(
        _py_spy(),
        "record",
        "--pid",
        str(os.getpid()),
        "--duration",
        str(int(seconds)),
        "--rate",
        str(RATE),
        "--gil",
        "--format",
        fmt,
        "--output",
        str(out),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )

    async def worker() -> None:
        while spy.returncode is None:
            await call()

    workers = [asyncio.create_task(worker()) for _ in range(IN_FLIGHT)]
    _out, err = await spy.communicate()
    await asyncio.gather(*workers)
    if spy.returncode != 0:
        raise RuntimeError(f"py-spy failed: {err.decode(errors='replace')[-500:]}")


def _where(frame: str) -> str:
    """``function (path:line)`` as ``function (path)``, the path from its package on."""
    name, _, rest = frame.partition(" (")
    path = rest.rsplit(":", 1)[0]
    for marker in ("site-packages/", f"{Path.cwd()}/"):
        path = path.split(marker, 1)[-1]
    return f"{name} ({path})"


def summarise(collapsed: Path, top: int = 12) -> list[str]:
    """Markdown: the frames with the most samples, inclusive and self, from collapsed stacks."""
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = [_where(f) for f in stack.split(";")[1:]]  # first is the thread
        for frame in set(frames):
            inclusive[frame] += count
        if frames:
            own[frames[-1]] += count
    lines = [f"{total} samples at {RATE}/s.", "", "| inclusive | self | frame |", "|---:|---:|---|"]
    ours = [f for f, _ in inclusive.most_common() if "gateway/" in f or "policy/" in f]
    for frame in ours[:top]:
        lines.append(
            f"| {100 * inclusive[frame] / total:.1f}% | {100 * own[frame] / total:.1f}% | {frame} |"
        )
    lines += ["", "Most self time, any code:", "", "| self | frame |", "|---:|---|"]
    for frame, count in own.most_common(top):
        lines.append(f"| {100 * count / total:.1f}% | {frame} |")
    return lines


def main() -> int:
    """Profile the selected flows (default: all three)."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("flows", nargs="*", help=f"flows to profile: {', '.join(FLOWS)}")
    parser.add_argument("--label", default="latest", help="file name suffix, e.g. before/after")
    parser.add_argument("--seconds", type=float, default=15, help="sampling time per graph")
    args = parser.parse_args()
    unknown = set(args.flows) - set(FLOWS)
    if unknown:
        parser.error(f"unknown flows {sorted(unknown)}; known: {', '.join(FLOWS)}")
    OUT.mkdir(exist_ok=True)
    report = [f"# Where the flows spend their time ({args.label})", ""]
    for flow in args.flows or FLOWS:
        svg = OUT / f"flame-{flow}-{args.label}.svg"
        collapsed = OUT / f"flame-{flow}-{args.label}.txt"

        async def profile(root: Path, flow: str = flow, svg: Path = svg, raw: Path = collapsed):
            async with flow_calls(root, flow) as call:
                for _ in range(50):  # warm channels, caches and lazy imports
                    await call()
                await _sample(call, args.seconds, svg, "flamegraph")
                await _sample(call, args.seconds, raw, "raw")
            return []

        print(f"== {flow}: {svg}", flush=True)
        run_in_temp_dir(profile)
        report += [f"## {flow}", "", *summarise(collapsed), ""]
    (OUT / f"profile-{args.label}.md").write_text("\n".join(report))
    print("\n".join(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
