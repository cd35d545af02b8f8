"""Several writer processes on one database, and kill -9 in the middle of a write burst."""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from gateway.audit import notes, records, tables
from gateway.audit.store import AuditLog
from gateway.audit.verify import Keys, verify_database
from tests.support import audit_writer as writer_child
from tests.support.audit import ORIGIN, migrated, record
from tests.support.databases import pg_schema_url


def _start(url: str, ack: Path, seconds: float) -> multiprocessing.process.BaseProcess:
    # Forked, so a writer starts at once instead of re-importing the stack;
    # it opens its own engine and connections.
    process = multiprocessing.get_context("fork").Process(
        target=writer_child.run, args=(url, str(ack), seconds)
    )
    process.start()
    return process


def _acks(path: Path) -> dict[int, str]:
    acks: dict[int, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        parts = line.split()
        if len(parts) == 2:  # a line torn by the kill is not an acknowledgement
            index, span = parts
            assert int(index) not in acks, f"index {index} acknowledged twice"
            acks[int(index)] = span
    return acks


def _check_all_present(url: str, acks: dict[int, str]) -> int:
    engine = sa.create_engine(url) if url.startswith("postgresql") else migrated(url)
    keys = Keys(notes.Signer.generate(ORIGIN).verifier())
    report = verify_database(engine, keys)
    assert report.ok, report.message
    with engine.connect() as conn:
        rows = dict(conn.execute(sa.select(tables.leaf.c.idx, tables.leaf.c.data)).all())
    for index, span in acks.items():
        assert index in rows, f"acknowledged leaf {index} is missing"
        assert records.decode(bytes(rows[index])).span_id == span
    engine.dispose()
    return report.size


@pytest.mark.postgres
def test_several_writer_processes_keep_one_log(tmp_path: Path) -> None:
    schema = pg_schema_url()
    url = next(schema)
    try:
        migrated(url).dispose()
        children = [
            (_start(url, tmp_path / f"ack{i}", 1.0), tmp_path / f"ack{i}") for i in range(4)
        ]
        for child, _ in children:
            child.join(timeout=60)
            assert child.exitcode == 0
        acks: dict[int, str] = {}
        for _, path in children:
            mine = _acks(path)
            assert mine, "a writer got nothing committed"
            assert not set(mine) & set(acks), "two processes got the same index"
            acks.update(mine)
        size = _check_all_present(url, acks)
        assert size == len(acks) == max(acks) + 1
    finally:
        next(schema, None)


def test_kill_9_loses_no_acknowledged_record(db_url: str, tmp_path: Path) -> None:
    engine = migrated(db_url)
    AuditLog(engine).append_many([record() for _ in range(10)])
    engine.dispose()
    ack = tmp_path / "ack"
    child = _start(db_url, ack, 30.0)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if ack.exists() and ack.stat().st_size > 20_000:
            break
        time.sleep(0.05)
    assert child.pid is not None
    os.kill(child.pid, signal.SIGKILL)
    child.join(timeout=10)
    assert child.exitcode == -signal.SIGKILL
    acks = _acks(ack)
    assert len(acks) > 200
    size = _check_all_present(db_url, acks)
    assert size >= max(acks) + 1
    # After the restart the log goes on from where the head is.
    log = AuditLog(migrated(db_url))
    assert log.append_sync(record()) == size
    log.close()
