"""Transcryption through a chain of two transcryptors, each in its own process, over mTLS.

The node's side (:class:`gateway.chain.TranscryptorChain`) runs in this
process and sends batches; each transcryptor converts its link with two
worker threads (libsodium releases the GIL), so the two processes and this
one share the machine's cores. Rows:

- ``chain2_throughput``: subjects/s converted from Y to one domain, in
  batches of :data:`BATCH`, all batches in flight at once (pipelined through
  both links);
- ``chain2_hit_no_hit_latency``: one subject to :data:`PEERS` domains (a
  hit/no-hit round's conversion): one call per transcryptor;
- the baseline, measured in the same run: today's single transcryption in
  this process (two threads for the rate; one thread, subject by subject,
  for the round, as the node did before).
"""

from __future__ import annotations

import asyncio
import socket
import statistics
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from gateway.chain import Link, TranscryptorChain
from gateway.dev import chain as devchain
from gateway.dev.keys import DevKeys
from gateway.tls import channel_credentials
from policy.pseudonyms import Ciphertext, FederationKeys, Transcryptor, encrypt, subject_point
from tests.bench.harness import Result
from tests.support.pki import Federation

AREA = "pseudonyms"
BATCH = 128
SUBJECTS = 12_800
PEERS = 30
ROUNDS = 21
NODE = "zvh-rotterdam-rijnmond"


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


async def _measure_chain(root: Path) -> tuple[float, float, dict[str, float]]:
    fed = Federation(root / "pki")
    keys = DevKeys(root / "keys")
    links, processes = [], []
    for transcryptor in keys.transcryptors:
        cred = fed.transcryptor(transcryptor)
        address = f"127.0.0.1:{_port()}"
        config = devchain.write_config(
            keys,
            transcryptor,
            devchain.TlsFiles(fed.ca_file, cred.cert_file, cred.key_file),
            listen=address,
            subjects_per_second=10_000_000,
            burst=10_000_000,
        )
        processes.append(devchain.spawn(config, root / f"{transcryptor}.log"))
        links.append(Link(transcryptor, address))
    node = fed.node(NODE)
    client = TranscryptorChain(
        links, channel_credentials(fed.ca_file, node.cert_file, node.key_file), batch_size=BATCH
    )
    try:
        for link, process in zip(links, processes, strict=True):
            await devchain.wait_listening(link.id, link.address, process)
        y = keys.global_public_key()
        items = [(ct, "politie-rr") for ct in _subjects(y, SUBJECTS)]
        await client.transcrypt(items[: BATCH * 4], from_domain=None, activity="bench")
        cpu = {p.pid: _cpu_seconds(p.pid) for p in processes}
        start, own = time.perf_counter(), time.process_time()
        await client.transcrypt(items, from_domain=None, activity="bench")
        elapsed = time.perf_counter() - start
        cpu_used = {
            "node_client_cpu_s": time.process_time() - own,
            **{
                f"{link.id}_cpu_s": _cpu_seconds(p.pid) - cpu[p.pid]
                for link, p in zip(links, processes, strict=True)
            },
        }
        own_domain = keys.domain(NODE)
        round_items = [
            (encrypt(subject_point("bsn", "123456782"), own_domain.public_key), f"peer-{i}")
            for i in range(PEERS)
        ]
        times = []
        for _ in range(ROUNDS):
            begun = time.perf_counter()
            await client.transcrypt(round_items, from_domain=NODE, activity="bench")
            times.append(time.perf_counter() - begun)
        return SUBJECTS / elapsed, statistics.median(times), cpu_used
    finally:
        await client.close()
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(10)


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])
    return ticks / 100.0


def run() -> list[Result]:
    """The chain rows and their same-run baselines."""
    keys = FederationKeys.generate()
    single: Transcryptor = keys.transcryptor_keys().transcryptor()
    items = _subjects(keys.global_public_key, SUBJECTS // 4)

    def in_process_two_threads() -> object:
        with ThreadPoolExecutor(max_workers=2) as pool:
            return list(pool.map(lambda ct: single.transcrypt(ct, "politie-rr"), items))

    base_rate = len(items) / _median_seconds(in_process_two_threads, 3)
    in_domain = single.transcrypt(items[0], NODE)
    base_round = _median_seconds(
        lambda: [single.transcrypt(in_domain, f"peer-{i}", NODE) for i in range(PEERS)], ROUNDS
    )
    with tempfile.TemporaryDirectory() as tmp:
        rate, round_seconds, cpu = asyncio.run(_measure_chain(Path(tmp)))
    throughput = Result(
        AREA,
        "chain2_throughput",
        rate,
        "subjects/s",
        baseline="single_in_process_2_threads",
        notes=f"2 transcryptor processes (2 workers each), batches of {BATCH}, "
        f"{SUBJECTS} subjects in flight at once; target 5,000",
    )
    throughput.extra.update(cpu)
    return [
        Result(
            AREA,
            "single_in_process_2_threads",
            base_rate,
            "subjects/s",
            notes="baseline: today's single transcryption in the node, 2 threads",
        ),
        throughput,
        Result(
            AREA,
            "single_hit_no_hit_round",
            base_round * 1000,
            "ms",
            notes=f"baseline: {PEERS} peers, transcrypted one by one in the node",
        ),
        Result(
            AREA,
            "chain2_hit_no_hit_round",
            round_seconds * 1000,
            "ms",
            baseline="single_hit_no_hit_round",
            notes=f"{PEERS} peers: one batch per transcryptor; the chain adds "
            f"{(round_seconds - base_round) * 1000:.1f} ms to the round",
        ),
    ]
