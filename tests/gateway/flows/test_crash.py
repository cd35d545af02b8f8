"""kill -9 under load: no acknowledged referral lost, no case without its record, a sound log.

A node runs as its own process under a steady load of referrals. It is
killed with SIGKILL at random moments and started again each time. In the
end every referral that was answered OK has its case and its audit record,
no case exists that no OK record names (start-up reconciliation withdrew any
that a kill left behind), and ``schakel audit verify`` accepts the log.
"""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import pytest
import sqlalchemy as sa
from schakel.v1 import audit_pb2

from gateway.audit.records import decode
from gateway.audit.store import iter_leaves
from gateway.cases.tables import cases
from gateway.cli import main
from gateway.dev.keys import DevKeys
from gateway.flows.aanmelding import METHOD as REFERRAL_METHOD
from gateway.flows.reconcile import METHOD as WITHDRAWAL
from gateway.storage import make_engine
from tests.support.chain import start_chain
from tests.support.pki import RR, Federation
from tests.support.process import log_vkey, node_process, referral_load, y_of

pytestmark = pytest.mark.slow

KILLS = 6
WORKERS = 8


async def test_kill_9_under_load_loses_no_acknowledged_call_and_leaves_no_orphan_case(
    tmp_path: Path, db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    fed = Federation(tmp_path / "pki")
    chain = await start_chain(fed, DevKeys(tmp_path / "keys"))
    node = node_process(tmp_path, fed, RR, db_url, transcryptors=chain.endpoints)
    health = fed.partner(RR, "politie-rr", "politie")
    rng = random.Random()
    acked: dict[str, str] = {}
    stop = asyncio.Event()
    node.start()
    await node.serving(health, fed.ca_file)
    load = asyncio.create_task(
        referral_load(node, fed, y_of(tmp_path), stop, workers=WORKERS, acked=acked)
    )
    try:
        for _ in range(KILLS):
            await asyncio.sleep(rng.uniform(0.5, 3.0))
            node.kill()
            node.start()
            await node.serving(health, fed.ca_file)
        await asyncio.sleep(1.0)
    finally:
        stop.set()
        await load
        assert node.stop() == 0
        await chain.stop()

    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            stored = set(conn.execute(sa.select(cases.c.id)).scalars())
            records = [decode(d) for _, _, d in iter_leaves(conn) if d is not None]
    finally:
        engine.dispose()
    named = {
        r.case_ref.case_id
        for r in records
        if r.status == audit_pb2.SPAN_STATUS_OK and r.case_ref.node_id == RR
    }
    referred = {
        r.case_ref.case_id
        for r in records
        if r.name == REFERRAL_METHOD and r.status == audit_pb2.SPAN_STATUS_OK
    }
    assert len(acked) > 100, "the load did not run"
    lost = [case_id for case_id in acked.values() if case_id not in stored]
    unrecorded = [case_id for case_id in acked.values() if case_id not in referred]
    orphans = sorted(stored - named)
    assert lost == [] and unrecorded == [], (lost, unrecorded)
    assert orphans == []
    withdrawn = {r.case_ref.case_id for r in records if r.name == WITHDRAWAL}
    # Withdrawn at start means no OK record had named the case: never one with its record.
    assert withdrawn.isdisjoint(named) and withdrawn.isdisjoint(stored)
    capsys.readouterr()
    assert main(["audit", "verify", "--db", db_url, "--log-key", log_vkey(tmp_path, RR)]) == 0
    verified = capsys.readouterr().out
    with capsys.disabled():
        print(
            f"\ncrash test: {KILLS} kills, {len(acked)} acknowledged referrals, "
            f"{len(stored)} cases, 0 lost, 0 orphans ({len(withdrawn)} withdrawn at start); "
            f"{verified.strip()}"
        )
