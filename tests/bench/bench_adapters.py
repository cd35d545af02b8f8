"""Partner side: SDK call overhead, task answering, index building and file-drop intake.

Client, simulated node (tests/support/simnode.py) and adapters share one
process, so each rate includes both ends of every call. Baselines: the raw
generated stub on the same mTLS channel for the SDK; the node-side
transcryption alone for index building.
"""

from __future__ import annotations

import asyncio
import random
import statistics
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import grpc
import grpc.aio
import sqlalchemy as sa
import yaml
from schakel.v1 import common_pb2, partner_pb2, partner_pb2_grpc

from adapters.filedrop import DropSchema, FileDropAdapter
from adapters.index import PseudonymIndex
from adapters.sdk import AdapterRunner, PartnerClient, encrypt_subject
from adapters.sql import SqlAdapter, SqlMapping
from gateway.dev.fakedata import fake_bsns
from policy.pseudonyms import Ciphertext, DomainKey, FederationKeys
from tests.bench.harness import Result, run_in_temp_dir
from tests.support.fakedata import (
    MUNICIPALITY_SCHEMA,
    POLICE_MAPPING,
    PoliceData,
    create_police_db,
    police_data,
)
from tests.support.partners import (
    POLICE,
    local_pseudonymiser,
    make_pki,
    partner_client,
    pseudonym_of,
    start_node,
)
from tests.support.simnode import PURPOSE, SimulatedNode

AREA = "adapters"
CALLS = 300
TASKS = 400
SUBJECTS = 2000
ROWS = 2000
LOOKUPS = 500


def run() -> list[Result]:
    """Measure the partner side against a simulated node on loopback mTLS."""
    return run_in_temp_dir(_run)


async def _run(tmp: Path) -> list[Result]:
    pki = make_pki()
    federation = FederationKeys.generate()
    keys = federation.domain_key_material(POLICE)
    sim = await start_node(pki, federation)
    client = partner_client(pki, sim.target)
    results: list[Result] = []
    try:
        async with grpc.aio.secure_channel(
            sim.target,
            grpc.ssl_channel_credentials(pki.ca, pki.partner_key, pki.partner_cert),
            options=[("grpc.ssl_target_name_override", "localhost")],
        ) as channel:
            results += await _sdk_overhead(client, channel)
        engine = sa.create_engine(f"sqlite:///{tmp / 'politie.db'}")
        data = police_data(persons=SUBJECTS)
        create_police_db(engine, data)
        index = PseudonymIndex(engine)
        index.create()
        adapter = SqlAdapter(engine, SqlMapping.from_dict(yaml.safe_load(POLICE_MAPPING)), index)
        results += await _index_build(client, adapter, index, federation, keys)
        results += await _lookups(adapter, data, federation)
        results += await _runner(client, adapter, sim.node, data, keys)
        results += await _filedrop(tmp, federation)
    finally:
        await client.close()
        await sim.server.stop(grace=None)
    return results


async def _timed_rate(fn: Callable[[], Awaitable[None]], ops: int, repeats: int = 5) -> float:
    """Median ops/s of an async ``fn`` (one warm-up run first)."""
    await fn()
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        await fn()
        rates.append(ops / (time.perf_counter() - start))
    return statistics.median(rates)


async def _sdk_overhead(client: PartnerClient, channel: grpc.aio.Channel) -> list[Result]:
    made = await client.submit_referral(
        purpose=PURPOSE,
        subject=common_pb2.EncryptedPseudonym(),
        theme="complexe-casuistiek",
        external_ref="bench",
    )
    request = partner_pb2.GetCaseStatusRequest(
        purpose=common_pb2.Purpose(processing_activity_id=PURPOSE), case_ref=made.case_ref
    )
    stub = partner_pb2_grpc.PartnerServiceStub(channel)

    async def raw() -> None:
        for _ in range(CALLS):
            await stub.GetCaseStatus(request, timeout=10)

    async def sdk() -> None:
        for _ in range(CALLS):
            await client.get_case_status(purpose=PURPOSE, case_ref=made.case_ref)

    return [
        Result(
            AREA, "raw stub GetCaseStatus, sequential", await _timed_rate(raw, CALLS), "calls/s"
        ),
        Result(
            AREA,
            "SDK get_case_status, sequential",
            await _timed_rate(sdk, CALLS),
            "calls/s",
            baseline="raw stub GetCaseStatus, sequential",
            notes="deadline, retry wrapper, traceparent per attempt",
        ),
    ]


async def _index_build(
    client: PartnerClient,
    adapter: SqlAdapter,
    index: PseudonymIndex,
    federation: FederationKeys,
    keys: DomainKey,
) -> list[Result]:
    rows = list(adapter.subjects())
    transcryptor = federation.transcryptor_keys().transcryptor()

    encrypted = [encrypt_subject(r.id_type, r.id_value, keys.global_public_key) for r in rows]

    async def transcrypt_only() -> None:
        for m in encrypted:
            transcryptor.transcrypt(Ciphertext.from_proto(m), POLICE)

    async def full_sync() -> None:
        await index.sync(
            rows, lambda batch: client.pseudonymise(batch, purpose=PURPOSE), keys, full=True
        )

    return [
        Result(
            AREA,
            "node-side transcryption only",
            await _timed_rate(transcrypt_only, SUBJECTS, 3),
            "subjects/s",
        ),
        Result(
            AREA,
            "index build over mTLS (encrypt, Pseudonymise, decrypt, insert)",
            await _timed_rate(full_sync, SUBJECTS, 3),
            "subjects/s",
            baseline="node-side transcryption only",
            notes=f"{SUBJECTS} subjects in batches of 1000, SQLite",
        ),
    ]


async def _lookups(
    adapter: SqlAdapter, data: PoliceData, federation: FederationKeys
) -> list[Result]:
    rng = random.Random(5)
    hexes = [
        pseudonym_of(federation, POLICE, data.persons[p][0])
        for p in rng.sample(list(data.persons), LOOKUPS)
    ]

    async def known_and_facts() -> None:
        for h in hexes:
            adapter.known(h)
            adapter.facts(h, ["justitie.antecedenten", "veiligheid.risico"])

    return [
        Result(
            AREA,
            "SQL adapter known() + facts() per subject",
            await _timed_rate(known_and_facts, LOOKUPS, 3),
            "subjects/s",
            notes="index look-up, contact join, 2 categories, SQLite",
        )
    ]


async def _runner(
    client: PartnerClient,
    adapter: SqlAdapter,
    node: SimulatedNode,
    data: PoliceData,
    keys: DomainKey,
) -> list[Result]:
    bsns = [data.persons[p][0] for p in list(data.persons)[:TASKS]]

    # One long-lived runner, as in production: a stream per round would let the
    # simulator's not-yet-cancelled handler of the previous stream take a task.
    runner = AdapterRunner(client, adapter, keys=keys)
    serving = asyncio.create_task(runner.run())
    while node.streams_opened < 1:
        await asyncio.sleep(0.002)

    async def answer_all() -> None:
        node.recorded.hits.clear()
        for bsn in bsns:
            node.queue_task(POLICE, partner_pb2.TASK_KIND_HIT_QUERY, id_value=bsn)
        end = time.monotonic() + 60
        while len(node.recorded.hits) < TASKS:
            if time.monotonic() > end:
                raise RuntimeError(f"runner answered {len(node.recorded.hits)} of {TASKS} tasks")
            await asyncio.sleep(0.002)

    # Queueing (a transcryption per task, node-side) is inside the timing: measured alone below.
    async def queue_only() -> None:
        for bsn in bsns:
            node.queue_task("bench-sink", partner_pb2.TASK_KIND_HIT_QUERY, id_value=bsn)

    try:
        answered = await _timed_rate(answer_all, TASKS, 3)
    finally:
        runner.stop()
        await serving
    return [
        Result(
            AREA,
            "simulated node queues hit tasks",
            await _timed_rate(queue_only, TASKS, 3),
            "tasks/s",
        ),
        Result(
            AREA,
            "runner answers hit tasks end to end",
            answered,
            "tasks/s",
            baseline="simulated node queues hit tasks",
            notes="queue + stream + decrypt + index + SQL + AnswerHit, concurrency 8",
        ),
    ]


async def _filedrop(tmp: Path, federation: FederationKeys) -> list[Result]:
    keys = federation.domain_key_material("gemeente-rotterdam")
    pseudonymise = local_pseudonymiser(federation, "gemeente-rotterdam")
    drop = tmp / "drop"
    drop.mkdir()
    fd = FileDropAdapter(
        drop,
        DropSchema.from_dict(yaml.safe_load(MUNICIPALITY_SCHEMA)),
        sa.create_engine(f"sqlite:///{tmp / 'fd.db'}"),
    )
    fd.create()
    bsns = fake_bsns(ROWS, seed=3)
    counter = iter(range(1_000_000))

    async def one_file() -> None:
        n = next(counter)
        lines = ["bsn;naam;status;sinds"] + [f"{b};run{n};dakloos;2025-03-01" for b in bsns]
        (drop / f"huisvesting_{n:05d}.csv").write_text("\n".join(lines) + "\n")
        await fd.process(pseudonymise, keys)

    return [
        Result(
            AREA,
            "file drop rows processed",
            await _timed_rate(one_file, ROWS, 3),
            "rows/s",
            notes="validate, pseudonymise (in-process transcryptor), snapshot replace, SQLite",
        )
    ]
