"""Signals: the cost of suppression on top of the aggregate query, and a national collection.

``answer`` is one GetSignals answer (query, suppression, protobuf) for a node
with POPULATION cases, against the registry's bare aggregate query on the
same database as baseline. ``suppress_large`` is suppression alone on a
table far wider than a region produces. ``collect`` asks NODES real nodes
over mTLS for 12 monthly periods each, in one process.
"""

from __future__ import annotations

import asyncio
import io
import random
import tempfile
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa

from gateway.cases import SignalCount, count_cases
from gateway.cases.suppression import suppress
from gateway.cases.tables import case_bottlenecks, cases
from gateway.collector.collect import collect, split_periods
from gateway.collector.directory import DirectoryNode
from gateway.flows.signalering import build_signals_response
from gateway.logging import configure_logging
from gateway.rpc.server import NodeServer, Servicers, build_server
from gateway.storage import make_engine, migrate
from gateway.tls import channel_credentials
from policy.vocabulary import Phase
from tests.bench.harness import Result, median_seconds
from tests.support.pki import Federation
from tests.support.signals import SignalsFederation

AREA = "signals"
POPULATION = 5000
NODES = 5
THEMES = ("complexe-casuistiek", "verward-gedrag", "nazorg", "huiselijk-geweld", "radicalisering")
TAGS = ("huisvesting", "zorgplek", "schulden", "wachtlijst-ggz", "beschermd-wonen", "inkomen")
OUTCOMES = ("doelen-bereikt", "overgedragen-regulier", "niet-ontvankelijk", "doorverwezen")
YEAR = datetime(2025, 1, 1, tzinfo=UTC)


def _fill(engine: sa.Engine, population: int, seed: int) -> None:
    """Case skeletons straight into the tables: the aggregate reads nothing else."""
    rng = random.Random(seed)
    rows, tags = [], []
    for _ in range(population):
        opened = YEAR + timedelta(hours=rng.randrange(365 * 24))
        accepted = opened + timedelta(days=rng.randrange(1, 30)) if rng.random() < 0.7 else None
        closed = (
            accepted + timedelta(days=rng.randrange(10, 200))
            if accepted and rng.random() < 0.5
            else None
        )
        case_id = uuid.uuid4().hex
        rows.append(
            {
                "id": case_id,
                "version": 1,
                "activity": "zvh.complexe-casuistiek",
                "theme": rng.choice(THEMES),
                "phase": "afschaling" if closed else "casusoverleg" if accepted else "aanmelding",
                "triage_reason": "",
                "outcome": rng.choice(OUTCOMES) if closed else "",
                "opened_at": opened,
                "accepted_at": accepted,
                "closed_at": closed,
            }
        )
        tags += [{"case_id": case_id, "tag": t} for t in rng.sample(TAGS, rng.randrange(0, 3))]
    with engine.begin() as conn:
        conn.execute(cases.insert(), rows)
        if tags:
            conn.execute(case_bottlenecks.insert(), tags)


def _large_table(rng: random.Random) -> list[SignalCount]:
    outcomes = ("", *OUTCOMES)
    return [
        SignalCount(t, p, o, b, rng.choice((0, 0, 1, 2, 3, 5, 8, 13, 21, 40, 90)))
        for t in (*THEMES, "levensloop", "overig")
        for p in Phase
        for o in outcomes
        for b in ("", *TAGS, "a", "b", "c")
    ]


async def _collection_seconds(root: Path) -> tuple[float, int]:
    fed = Federation(root)
    nodes: list[NodeServer] = []
    for i in range(NODES):
        node_id = f"zvh-bench-{i}"
        servicer = SignalsFederation(node_id)
        node = build_server(fed.config(fed.node(node_id)), Servicers(federation=servicer))
        servicer.engine = node.engine
        _fill(node.engine, POPULATION // NODES, seed=i)
        await node.start()
        nodes.append(node)
    collector = fed.collector()
    creds = channel_credentials(fed.ca_file, collector.cert_file, collector.key_file)
    directory = [DirectoryNode(n.config.node.id, n.address, n.config.node.id) for n in nodes]
    periods = split_periods(YEAR, YEAR.replace(year=2026), monthly=True)
    loop = asyncio.get_running_loop()
    times = []
    try:
        for _ in range(4):
            start = loop.time()
            result = await collect(directory, creds, periods, timeout=30)
            times.append(loop.time() - start)
            assert not result.failures, result.failures
    finally:
        for node in nodes:
            await node.stop(grace=None)
    times.sort()
    return times[len(times) // 2], NODES * len(periods)


def run() -> list[Result]:
    """Answer cost vs the bare query, suppression of a large table, a national collection."""
    configure_logging("info", stream=io.StringIO())
    results: list[Result] = []
    with tempfile.TemporaryDirectory() as tmp:
        engine = make_engine(f"sqlite:///{tmp}/bench.db")
        migrate(engine)
        _fill(engine, POPULATION, seed=1)
        month = (YEAR.replace(month=6), YEAR.replace(month=7))
        cells = count_cases(engine, *month)
        query = median_seconds(lambda: count_cases(engine, *month))
        answer = median_seconds(lambda: build_signals_response(engine, "zvh-bench", *month))
        engine.dispose()
        table = _large_table(random.Random(3))
        large = median_seconds(lambda: suppress(table), repeats=3)
        hidden = suppress(table).suppressed_count
        collect_s, calls = asyncio.run(_collection_seconds(Path(tmp)))
    results += [
        Result(AREA, "aggregate_query", query * 1000, "ms", notes=f"{POPULATION} cases, sqlite"),
        Result(
            AREA,
            "answer",
            answer * 1000,
            "ms",
            baseline="aggregate_query",
            notes=f"query + suppression + protobuf, {len(cells)} cells",
        ),
        Result(
            AREA,
            "suppress_large",
            large * 1000,
            "ms",
            notes=f"{len(table)} candidate cells, {hidden} numbers suppressed",
        ),
        Result(
            AREA,
            "collect",
            collect_s * 1000,
            "ms",
            notes=f"{NODES} nodes x 12 months = {calls} GetSignals calls over mTLS, one process",
        ),
    ]
    return results
