"""Transcryption through a chain of two transcryptors, each in its own process, over mTLS.

The node's side (:class:`gateway.chain.TranscryptorChain`) runs in this
process and sends batches; each transcryptor converts its link with two
worker threads (libsodium releases the GIL), so the two processes and this
one share the machine's two cores. Every rate is a median (of
:data:`REPEATS` runs in this process, taking turns; of :data:`CHAIN_REPEATS`
through the chain), and the baselines are measured in the same run:

- ``transcrypt_in_process_1_thread`` / ``_2_threads``: today's single
  transcryption in this process, the baseline;
- ``libsodium_link_floor_1_thread``: only the libsodium calls one link makes
  per subject (three variable-base and one fixed-base multiplication, two
  additions). A chain of two on two cores cannot convert faster than this
  one-core rate, whatever the code around the calls does;
- ``chain2_batch_<n>``: subjects/s from Y to one domain through both
  transcryptors in batches of ``n``. Its extras give the CPU time per
  subject of the node side and of each transcryptor, and
  ``cpu_bound_subjects_per_s``: two cores divided by that CPU time, the rate
  when no other process shares the cores (the machine is shared: wall-clock
  rates move with the other load, CPU per subject much less; the in-process
  rows give theirs as well);
- ``single_hit_no_hit_round`` / ``chain2_hit_no_hit_round`` /
  ``chain2_hit_no_hit_added``: one subject to :data:`PEERS` domains, a
  hit/no-hit round's conversion (p50 of :data:`ROUNDS`): subject by subject
  in the node before, one call per transcryptor now, and what the chain adds.
"""

from __future__ import annotations

import asyncio
import socket
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pysodium

from gateway.chain import Link, TranscryptorChain
from gateway.dev import chain as devchain
from gateway.dev.keys import DevKeys
from gateway.tls import channel_credentials
from policy.pseudonyms import Ciphertext, FederationKeys, Transcryptor, encrypt, subject_point
from tests.bench.harness import Result
from tests.support.pki import Federation

AREA = "pseudonyms"
BATCHES = (128, 1024)
SUBJECTS = 8192
REPEATS = 5
CHAIN_REPEATS = 3
PEERS = 30
ROUNDS = 21
CORES = 2
NODE = "zvh-rotterdam-rijnmond"
TARGET = "politie-rr"


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _subjects(y: bytes, count: int) -> list[Ciphertext]:
    point = subject_point("bsn", "123456782")
    return [encrypt(point, y) for _ in range(count)]


def _median_seconds(fn: Callable[[], object], repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])
    return ticks / 100.0


def _link_floor(items: Sequence[Ciphertext]) -> None:
    """The libsodium calls of one link per subject, with fixed factors and nothing else."""
    s, k = pysodium.crypto_core_ristretto255_scalar_random(), items[0].public_key
    for ct in items:
        r = pysodium.crypto_core_ristretto255_scalar_random()
        pysodium.crypto_core_ristretto255_add(
            pysodium.crypto_scalarmult_ristretto255(s, ct.b),
            pysodium.crypto_scalarmult_ristretto255_base(r),
        )
        pysodium.crypto_core_ristretto255_add(
            pysodium.crypto_scalarmult_ristretto255(s, ct.c),
            pysodium.crypto_scalarmult_ristretto255(r, k),
        )


def _interleaved(fns: Sequence[Callable[[], object]], count: int) -> list[tuple[float, float]]:
    """Per ``fn`` (``count`` subjects a call): median subjects/s and median CPU µs per subject.

    The functions take turns within each repeat, so a change in the other
    load of the machine falls on all of them alike.
    """
    runs: list[list[tuple[float, float]]] = [[] for _ in fns]
    for repeat in range(REPEATS + 1):
        for fn, run in zip(fns, runs, strict=True):
            start, own = time.perf_counter(), time.process_time()
            fn()
            if repeat:  # the first round warms caches and the pool
                wall, cpu = time.perf_counter() - start, time.process_time() - own
                run.append((count / wall, cpu / count * 1e6))
    return [
        (statistics.median(r for r, _ in run), statistics.median(c for _, c in run)) for run in runs
    ]


def _in_process(single: Transcryptor, items: list[Ciphertext]) -> list[Result]:
    def one_thread(part: Sequence[Ciphertext] = items) -> object:
        return [single.transcrypt(ct, TARGET) for ct in part]

    half = len(items) // 2
    with ThreadPoolExecutor(max_workers=2) as pool:

        def two_threads() -> object:
            # As a transcryptor does: the batch split in one chunk per worker.
            return list(pool.map(one_thread, (items[:half], items[half:])))

        one, two, floor = _interleaved(
            [one_thread, two_threads, lambda: _link_floor(items)], len(items)
        )
    rows = [
        (
            "transcrypt_in_process_1_thread",
            one,
            "",
            "baseline: today's single transcryption in the node, one thread",
        ),
        (
            "transcrypt_in_process_2_threads",
            two,
            "transcrypt_in_process_1_thread",
            "baseline: the same on both cores (a chunk per thread)",
        ),
        (
            "libsodium_link_floor_1_thread",
            floor,
            "transcrypt_in_process_1_thread",
            "one link's libsodium calls alone (3 variable-base mults, 1 fixed-base, 2 adds): "
            "a chain of 2 on 2 cores cannot exceed this one-core rate",
        ),
    ]
    results = []
    for name, (rate, cpu), baseline, what in rows:
        notes = f"{what}; {cpu:.0f} µs CPU per subject"
        result = Result(AREA, name, rate, "subjects/s", baseline=baseline, notes=notes)
        result.extra["cpu_us_per_subject"] = cpu
        results.append(result)
    return results


class _Processes:
    """The two transcryptor processes and the node's view of them."""

    def __init__(self, root: Path) -> None:
        self.fed = Federation(root / "pki")
        self.keys = DevKeys(root / "keys")
        self.links: list[Link] = []
        self.pids: list[int] = []
        self.processes: list[subprocess.Popen[bytes]] = []
        for transcryptor in self.keys.transcryptors:
            cred = self.fed.transcryptor(transcryptor)
            address = f"127.0.0.1:{_port()}"
            config = devchain.write_config(
                self.keys,
                transcryptor,
                devchain.TlsFiles(self.fed.ca_file, cred.cert_file, cred.key_file),
                listen=address,
                subjects_per_second=10_000_000,
                burst=10_000_000,
            )
            process = devchain.spawn(config, root / f"{transcryptor}.log")
            self.processes.append(process)
            self.pids.append(process.pid)
            self.links.append(Link(transcryptor, address))
        node = self.fed.node(NODE)
        self.credentials = channel_credentials(self.fed.ca_file, node.cert_file, node.key_file)

    async def wait(self) -> None:
        for link, process in zip(self.links, self.processes, strict=True):
            await devchain.wait_listening(link.id, link.address, process)

    def stop(self) -> None:
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            process.wait(10)


async def _throughput(chain: _Processes, batch: int, items: list[tuple[Ciphertext, str]]) -> Result:
    client = TranscryptorChain(chain.links, chain.credentials, batch_size=batch)
    try:
        await client.transcrypt(items[: batch * 4], from_domain=None, activity="bench")
        rates, cpu = [], []
        for _ in range(CHAIN_REPEATS):
            before = [_cpu_seconds(pid) for pid in chain.pids]
            start, own = time.perf_counter(), time.process_time()
            await client.transcrypt(items, from_domain=None, activity="bench")
            rates.append(len(items) / (time.perf_counter() - start))
            used = [time.process_time() - own]
            used += [_cpu_seconds(p) - b for p, b in zip(chain.pids, before, strict=True)]
            cpu.append([seconds / len(items) * 1e6 for seconds in used])
    finally:
        await client.close()
    per_subject = [statistics.median(column) for column in zip(*cpu, strict=True)]
    names = ["node_client", *(link.id for link in chain.links)]
    ceiling = CORES * 1e6 / sum(per_subject)
    result = Result(
        AREA,
        f"chain2_batch_{batch}",
        statistics.median(rates),
        "subjects/s",
        baseline="transcrypt_in_process_2_threads",
        notes=f"2 transcryptor processes (2 workers each), batches of {batch}, "
        f"{client.in_flight} in flight, {len(items)} subjects; CPU per subject "
        + " + ".join(f"{v:.0f}" for v in per_subject)
        + f" µs (node, links): {ceiling:,.0f}/s if no other process used the {CORES} cores; "
        "target 5,000",
    )
    for name, value in zip(names, per_subject, strict=True):
        result.extra[f"{name}_cpu_us_per_subject"] = value
    result.extra["cpu_bound_subjects_per_s"] = ceiling
    return result


async def _round(chain: _Processes) -> list[float]:
    client = TranscryptorChain(chain.links, chain.credentials)
    try:
        own_domain = chain.keys.domain(NODE)
        items = [
            (encrypt(subject_point("bsn", "123456782"), own_domain.public_key), f"peer-{i}")
            for i in range(PEERS)
        ]
        await client.transcrypt(items, from_domain=NODE, activity="bench")
        times = []
        for _ in range(ROUNDS):
            begun = time.perf_counter()
            await client.transcrypt(items, from_domain=NODE, activity="bench")
            times.append(time.perf_counter() - begun)
    finally:
        await client.close()
    return times


async def _measure_chain(root: Path) -> tuple[list[Result], list[float]]:
    chain = _Processes(root)
    try:
        await chain.wait()
        y = chain.keys.global_public_key()
        items = [(ct, TARGET) for ct in _subjects(y, SUBJECTS)]
        results = [await _throughput(chain, batch, items) for batch in BATCHES]
        return results, await _round(chain)
    finally:
        chain.stop()


def run() -> list[Result]:
    """The chain rows and their same-run baselines."""
    keys = FederationKeys.generate()
    single: Transcryptor = keys.transcryptor_keys().transcryptor()
    results = _in_process(single, _subjects(keys.global_public_key, SUBJECTS // 4))
    in_domain = single.transcrypt(_subjects(keys.global_public_key, 1)[0], NODE)

    def single_round() -> object:
        return [single.transcrypt(in_domain, f"peer-{i}", NODE) for i in range(PEERS)]

    base_round = _median_seconds(single_round, ROUNDS)
    with tempfile.TemporaryDirectory() as tmp:
        throughput, times = asyncio.run(_measure_chain(Path(tmp)))
    chain_round = statistics.median(times)
    round_result = Result(
        AREA,
        "chain2_hit_no_hit_round",
        chain_round * 1000,
        "ms",
        baseline="single_hit_no_hit_round",
        notes=f"{PEERS} peers: one batch per transcryptor, p50 of {ROUNDS}",
    )
    round_result.extra["p90_ms"] = statistics.quantiles(times, n=10)[8] * 1000
    return [
        *results,
        *throughput,
        Result(
            AREA,
            "single_hit_no_hit_round",
            base_round * 1000,
            "ms",
            notes=f"baseline: {PEERS} peers, transcrypted one by one in the node",
        ),
        round_result,
        Result(
            AREA,
            "chain2_hit_no_hit_added",
            (chain_round - base_round) * 1000,
            "ms",
            notes="what the chain adds to a hit/no-hit round (p50 chain minus p50 single)",
        ),
    ]
