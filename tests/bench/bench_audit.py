"""Audit log: durable appends, checkpoint signing, proof sizes, verification speed and memory.

- Appends: records/s acknowledged only after COMMIT, through the group-commit
  batcher (many concurrent ``await log.append``), on SQLite and PostgreSQL;
  baseline: one leaf per transaction in the same run.
- Checkpoint signing: consistency check against the last checkpoint plus the
  Ed25519 signature and the insert, on a 10^6-leaf log.
- Proofs: inclusion and consistency proof sizes at 10^6 leaves (computed) and
  the time to build an inclusion proof from the store.
- Verification: leaves/s and peak RSS of a fresh verifier process, at 10^5 and
  10^6 leaves; flat memory means the second is not bigger than the first.

The 10^6-leaf database is built through the real write path (hashing, compact
range, subtree cache, head CAS) in 50k-leaf transactions from a template
record whose span id varies, so building takes tens of seconds, not minutes.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import sqlalchemy as sa

from gateway.audit import merkle, notes, records
from gateway.audit.checkpoint import Checkpointer
from gateway.audit.store import AuditLog, _Item
from gateway.audit.verify import Keys, verify_database
from gateway.logging import configure_logging
from gateway.storage import make_engine, migrate
from tests.bench.harness import Result, median_rate, median_seconds
from tests.support.audit_sample import ORIGIN, record

AREA = "audit"
BURST = 10_000
SINGLE = 300
PG_ADMIN = os.environ.get("SCHAKEL_TEST_PG", "postgresql+psycopg://127.0.0.1:5432/test")


def _migrated(url: str) -> sa.Engine:
    engine = make_engine(url)
    migrate(engine)
    return engine


def _appends(backend: str, url: str) -> list[Result]:
    log = AuditLog(_migrated(url))
    burst = [record() for _ in range(BURST)]
    singles = [record() for _ in range(SINGLE)]

    def one_per_transaction() -> None:
        for r in singles:
            log.append_many([r])

    async def group() -> None:
        await asyncio.gather(*(log.append(r) for r in burst))

    base = f"durable appends/s {backend}, one leaf per transaction"
    single_rate = median_rate(one_per_transaction, SINGLE, repeats=3)
    group_rate = median_rate(lambda: asyncio.run(group()), BURST, repeats=3)
    log.close()
    log.engine.dispose()
    return [
        Result(AREA, base, single_rate, "appends/s"),
        Result(
            AREA,
            f"durable appends/s {backend}, group commit",
            group_rate,
            "appends/s",
            baseline=base,
            notes=f"{BURST} concurrent awaits; target >= 10,000/s",
        ),
    ]


def build(url: str, size: int) -> AuditLog:
    """A log of ``size`` leaves written through the real append path in big transactions."""
    log = AuditLog(_migrated(url))
    template = record()
    template.span_id = "a" * 16
    base = template.SerializeToString(deterministic=True)
    columns = records.columns(template)
    marker = b"a" * 16
    for start in range(0, size, 50_000):
        items = [
            _Item(base.replace(marker, f"{i:016x}".encode()), columns, None, None)  # type: ignore[arg-type]
            for i in range(start, min(size, start + 50_000))
        ]
        log._write(items)
    return log


def _verify_child(url: str, vkey: str) -> None:
    """Entry point of the verifier process: prints rate and peak RSS as JSON."""
    engine = make_engine(url)
    keys = Keys(notes.Verifier.from_vkey(vkey))
    start = time.perf_counter()
    report = verify_database(engine, keys)
    elapsed = time.perf_counter() - start
    assert report.ok, report.message
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"rate": report.size / elapsed, "peak_mib": peak_kib / 1024}))


def _verify(url: str, vkey: str, runs: int) -> tuple[float, float]:
    rates, peaks = [], []
    for _ in range(runs):
        done = subprocess.run(
            [sys.executable, "-m", "tests.bench.bench_audit", "verify", url, vkey],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode:
            raise RuntimeError(f"verifier failed: {done.stderr[-2000:]}")
        result = json.loads(done.stdout.splitlines()[-1])
        rates.append(result["rate"])
        peaks.append(result["peak_mib"])
    return statistics.median(rates), max(peaks)


def run() -> list[Result]:
    """Measure the audit log."""
    configure_logging("warning", stream=io.StringIO())
    results: list[Result] = []
    with tempfile.TemporaryDirectory() as tmp:
        results += _appends("SQLite", f"sqlite:///{Path(tmp) / 'appends.db'}")
        schema = f"bench_{uuid.uuid4().hex[:8]}"
        admin = sa.create_engine(PG_ADMIN)
        with admin.begin() as conn:
            conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
        try:
            results += _appends("PostgreSQL", f"{PG_ADMIN}?options=-csearch_path%3D{schema}")
        finally:
            with admin.begin() as conn:
                conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
            admin.dispose()

        small_url = f"sqlite:///{Path(tmp) / 'small.db'}"
        build(small_url, 100_000).engine.dispose()
        big_url = f"sqlite:///{Path(tmp) / 'big.db'}"
        started = time.perf_counter()
        log = build(big_url, 1_000_000)
        built = time.perf_counter() - started

        size = log.head().size
        results.append(
            Result(
                AREA,
                "inclusion proof size at 10^6 leaves",
                max(len(merkle.inclusion_ranges(i, size)) for i in (0, size // 2, size - 1)) * 32,
                "bytes",
                notes="20 hashes (computed: ceil(log2 10^6))",
            )
        )
        results.append(
            Result(
                AREA,
                "consistency proof size 500,000 -> 10^6 leaves",
                len(merkle.consistency_ranges(500_000, size)) * 32,
                "bytes",
            )
        )
        results.append(
            Result(
                AREA,
                "inclusion proof from the store at 10^6 leaves",
                median_seconds(lambda: log.inclusion_proof(654_321, size), repeats=7) * 1000,
                "ms",
                notes="subtree cache every 4 levels: <= 8 rows per proof hash",
            )
        )
        signer = notes.Signer.generate(ORIGIN)
        checkpointer = Checkpointer(log, signer, every_records=1)
        checkpointer.sign()
        times = []
        for _ in range(5):
            log.append_many([record() for _ in range(100)])
            start = time.perf_counter()
            checkpointer.sign()
            times.append(time.perf_counter() - start)
        results.append(
            Result(
                AREA,
                "checkpoint signing at 10^6 leaves",
                statistics.median(times) * 1000,
                "ms",
                notes="consistency proof + check, root check, Ed25519, insert",
            )
        )
        log.close()
        log.engine.dispose()

        vkey = signer.verifier().vkey()
        small_rate, small_peak = _verify(small_url, vkey, 3)
        big_rate, big_peak = _verify(big_url, vkey, 3)
        results += [
            Result(
                AREA,
                "verification 10^5 leaves",
                small_rate,
                "leaves/s",
                notes=f"peak RSS {small_peak:.0f} MiB",
                extra={"peak_rss_mib": small_peak},
            ),
            Result(
                AREA,
                "verification 10^6 leaves",
                big_rate,
                "leaves/s",
                baseline="verification 10^5 leaves",
                notes=f"peak RSS {big_peak:.0f} MiB; target >= 200,000/s; built in {built:.0f} s",
                extra={"peak_rss_mib": big_peak},
            ),
            Result(
                AREA,
                "verifier peak RSS 10^6 vs 10^5 leaves",
                big_peak / small_peak,
                "ratio",
                notes="flat memory: ~1.0",
            ),
        ]
    return results


if __name__ == "__main__":
    if sys.argv[1:2] == ["verify"]:
        _verify_child(sys.argv[2], sys.argv[3])
