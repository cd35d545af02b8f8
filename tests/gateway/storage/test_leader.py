"""One leader among replicas by a PostgreSQL advisory lock, and failover when it dies.

Two contenders in this process (two engines, as two replicas have) and, for
the crash, a contender in a child process killed with SIGKILL.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import psycopg
import pytest
import sqlalchemy as sa

from gateway.storage import make_engine
from gateway.storage.leader import LOCK_NAME, Leadership
from gateway.storage.shared import scoped_key
from tests.support.databases import pg_schema_url
from tests.support.paths import ROOT

pytestmark = pytest.mark.postgres

FAILOVER_SECONDS = 10.0
CHILD = (
    "import asyncio, sys; from gateway.storage import make_engine; "
    "from gateway.storage.leader import Leadership\n"
    "async def main():\n"
    "    lead = Leadership(make_engine(sys.argv[1]), poll_seconds=0.2)\n"
    "    stop = asyncio.Event(); run = asyncio.create_task(lead.run(stop))\n"
    "    while not lead.leading: await asyncio.sleep(0.05)\n"
    "    print('leading', flush=True); await run\n"
    "asyncio.run(main())\n"
)


@pytest.fixture
def url() -> Iterator[str]:
    yield from pg_schema_url()


async def _until(check: object, seconds: float) -> float:
    """Seconds until ``check()`` holds; fails after ``seconds``."""
    started = time.monotonic()
    while not check():  # type: ignore[operator]
        assert time.monotonic() - started < seconds, "not within the time allowed"
        await asyncio.sleep(0.05)
    return time.monotonic() - started


async def test_one_of_two_contenders_leads_and_the_other_takes_over_when_it_stops(
    url: str,
) -> None:
    engines = [make_engine(url), make_engine(url)]
    contenders = [Leadership(engine, poll_seconds=0.2) for engine in engines]
    stops = [asyncio.Event(), asyncio.Event()]
    ran: list[tuple[int, str]] = []

    def work(n: int):  # type: ignore[no-untyped-def]
        async def duty(ended: asyncio.Event) -> None:
            ran.append((n, "start"))
            await ended.wait()
            ran.append((n, "end"))

        return duty

    runs = [asyncio.create_task(c.run(s)) for c, s in zip(contenders, stops, strict=True)]
    duties = [
        asyncio.create_task(c.lead(work(n), s))
        for n, (c, s) in enumerate(zip(contenders, stops, strict=True))
    ]
    try:
        await _until(lambda: any(c.leading for c in contenders), 5)
        await asyncio.sleep(1.0)  # several polls: the other never gets it meanwhile
        assert sum(c.leading for c in contenders) == 1
        leader = next(n for n, c in enumerate(contenders) if c.leading)
        assert ran == [(leader, "start")], "the duty runs on the leader only"
        stops[leader].set()
        took = await _until(lambda: contenders[1 - leader].leading, FAILOVER_SECONDS)
        assert took < FAILOVER_SECONDS
        await _until(lambda: (1 - leader, "start") in ran, 2)
        assert ran[:2] == [(leader, "start"), (leader, "end")], "the old leader's duty ended first"
    finally:
        for stop in stops:
            stop.set()
        await asyncio.gather(*runs, *duties)
        for engine in engines:
            engine.dispose()


async def test_a_killed_leader_is_replaced_within_ten_seconds(url: str) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, url], stdout=subprocess.PIPE, text=True, cwd=ROOT
    )
    engine = make_engine(url)
    follower = Leadership(engine, poll_seconds=0.5)
    stop = asyncio.Event()
    run: asyncio.Task[None] | None = None
    try:
        assert child.stdout is not None
        out = child.stdout

        def leading() -> None:
            while (line := out.readline()) != "leading\n":  # after its own log lines
                assert line, "the child ended before it led"

        await asyncio.wait_for(asyncio.to_thread(leading), 30)
        run = asyncio.create_task(follower.run(stop))
        await asyncio.sleep(1.5)
        assert not follower.leading, "the lock is the child's while it lives"
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=10)
        took = await _until(lambda: follower.leading, FAILOVER_SECONDS)
        assert took < FAILOVER_SECONDS
    finally:
        if child.poll() is None:
            child.kill()
        stop.set()
        if run is not None:
            await run
        engine.dispose()


async def test_a_leader_whose_session_is_cut_stops_leading(url: str) -> None:
    engine = make_engine(url)
    leader = Leadership(engine, poll_seconds=0.2)
    stop = asyncio.Event()
    run = asyncio.create_task(leader.run(stop))
    try:
        await _until(lambda: leader.leading, 5)
        with engine.begin() as conn:
            raw = conn.connection.driver_connection
            assert isinstance(raw, psycopg.Connection)
            key = scoped_key(raw, LOCK_NAME) & 0xFFFFFFFFFFFFFFFF
            # Only the session holding this schema's leader lock: other tests running beside
            # this one hold advisory locks of their own in the same database.
            cut = (
                conn.execute(
                    sa.text(
                        "SELECT pg_terminate_backend(pid) FROM pg_locks "
                        "WHERE locktype = 'advisory' AND granted AND pid <> pg_backend_pid() "
                        "AND classid::text::bigint = :high AND objid::text::bigint = :low "
                        "AND objsubid = 1 AND database = "
                        "(SELECT oid FROM pg_database WHERE datname = current_database())"
                    ),
                    {"high": key >> 32, "low": key & 0xFFFFFFFF},
                )
                .scalars()
                .all()
            )
        assert cut, "the leader held an advisory lock"
        await _until(lambda: not leader.leading, 5)
        await _until(lambda: leader.leading, FAILOVER_SECONDS)  # free again: it takes it back
    finally:
        stop.set()
        await run
        engine.dispose()
