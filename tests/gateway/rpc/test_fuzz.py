"""Every RPC of every service, fed hypothesis-made messages over mTLS with its rightful caller.

For each call: never INTERNAL or UNKNOWN (a fault of the node), never
UNAVAILABLE (the input is bad, the node is fine), a status message of at
most 1 KB, and a refused call changes no case, fact or task row (audit
records grow by its refusal record; a task row may only go, by the purge).

A short, fixed run is part of the fast suite; the long run, on SQLite and
PostgreSQL, is marked slow (``make test-all``).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest
import sqlalchemy as sa
from google.protobuf.descriptor import MethodDescriptor
from google.protobuf.message import Message
from hypothesis import HealthCheck, Phase, given, settings
from schakel.v1 import audit_pb2, case_pb2, federation_pb2, partner_pb2

from gateway.cases.tables import (
    case_bottlenecks,
    case_facts,
    case_grounds,
    case_hits,
    case_participants,
    case_transfers,
    cases,
)
from gateway.tasks.store import partner_tasks
from tests.support.flow import Flow, running_flow
from tests.support.fuzz_seeds import seeds_for
from tests.support.fuzzing import BIG, MessageStrategies, Seeds
from tests.support.pki import HL, RR, Credential

SHORT_EXAMPLES = 6
LONG_EXAMPLES = int(os.environ.get("SCHAKEL_FUZZ_EXAMPLES", "250"))
TIMEOUT = 2.0
BSN = "111222333"
MAX_MESSAGE_BYTES = 1024
CASE_TABLES = (
    cases,
    case_participants,
    case_grounds,
    case_hits,
    case_bottlenecks,
    case_facts,
    case_transfers,
)
FAULTS = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN, grpc.StatusCode.UNAVAILABLE}
NOT_REFUSED = {grpc.StatusCode.OK, grpc.StatusCode.DEADLINE_EXCEEDED}
"""A call that ran out of its deadline was not refused: it may have done its work."""


@dataclass(frozen=True)
class Rpc:
    method: MethodDescriptor
    caller: str

    @property
    def path(self) -> str:
        return f"/{self.method.containing_service.full_name}/{self.method.name}"

    def __str__(self) -> str:
        return self.path


def rpcs() -> list[Rpc]:
    """Every RPC of the four services, with the kind of caller it admits."""
    callers = {
        "PartnerService": "partner",
        "CaseService": "officer",
        "FederationService": "node",
        "AuditService": "fg",
    }
    out = []
    for module in (partner_pb2, case_pb2, federation_pb2, audit_pb2):
        for service in module.DESCRIPTOR.services_by_name.values():
            for method in service.methods:
                who = "collector" if method.name == "GetSignals" else callers[service.name]
                out.append(Rpc(method, who))
    return out


@dataclass
class Fuzzed:
    flow: Flow
    seeds: Seeds
    channels: dict[str, grpc.aio.Channel]
    loop: asyncio.AbstractEventLoop
    codes: Counter[tuple[str, str]] = field(default_factory=Counter)
    """(method, status) -> calls, for the run's summary."""

    def summary(self) -> str:
        """Calls per status over the run, and how many methods answered OK at least once."""
        by_code: Counter[str] = Counter()
        for (_method, code), count in self.codes.items():
            by_code[code] += count
        ok = len({m for m, c in self.codes if c == "OK"})
        total = sum(by_code.values())
        return f"{total} calls, {dict(by_code.most_common())}; {ok} methods answered OK"


def _credentials(flow: Flow) -> dict[str, Credential]:
    fed = flow.pair.fed
    return {
        "partner": fed.partner(RR, "politie-rr", "politie", force=True),
        "officer": fed.officer(RR, "procesregisseur"),
        "fg": fed.officer(RR, "fg"),
        "node": fed.node(HL, force=True),
        "collector": fed.collector(),
    }


def _partners(node_id: str) -> str:
    """politie-rr at RR and ggz-hl at HL: the first hit/no-hit round after a referral from
    politie-rr asks no partner, so it never waits out its deadline."""
    org, kind = ("politie-rr", "politie") if node_id == RR else ("ggz-hl", "ggz")
    return f'\n[[partners]]\nid = "{org}"\norg_type = "{kind}"\n'


@asynccontextmanager
async def fuzzing(root: Path, db_url: str) -> AsyncIterator[Fuzzed]:
    """RR (on ``db_url``) with its peer HL, seeded cases and tasks, and a channel per caller."""
    async with running_flow(root, db_url, _partners) as flow:
        seeds = await seeds_for(flow)
        channels = {who: flow.pair.channel(RR, cred) for who, cred in _credentials(flow).items()}
        try:
            yield Fuzzed(flow, seeds, channels, asyncio.get_running_loop())
        finally:
            for channel in channels.values():
                await channel.close()


def _rows(engine: sa.Engine) -> dict[str, frozenset[str]]:
    """Every row of the case, fact and task tables, each as its repr."""
    with engine.connect() as conn:
        return {
            t.name: frozenset(repr(tuple(r)) for r in conn.execute(sa.select(t)))
            for t in (*CASE_TABLES, partner_tasks)
        }


async def _send(fuzzed: Fuzzed, rpc: Rpc, request: Message) -> tuple[grpc.StatusCode, str]:
    channel = fuzzed.channels[rpc.caller]
    output = rpc.method.output_type._concrete_class
    serialize, parse = type(request).SerializeToString, output.FromString
    try:
        if not rpc.method.server_streaming:
            await channel.unary_unary(rpc.path, serialize, parse)(request, timeout=TIMEOUT)
            return grpc.StatusCode.OK, ""
        call = channel.unary_stream(rpc.path, serialize, parse)(request, timeout=TIMEOUT)

        async def drain() -> None:
            async for _ in call:
                pass

        try:
            await asyncio.wait_for(drain(), TIMEOUT / 2)
        except TimeoutError:
            call.cancel()  # an open task stream: it was taken, not refused
        return grpc.StatusCode.OK, ""
    except grpc.aio.AioRpcError as exc:
        return exc.code(), exc.details() or ""


async def _one(fuzzed: Fuzzed, rpc: Rpc, request: Message) -> None:
    parts = fuzzed.flow.pair.nodes[RR].parts
    await parts.tasks.settle()  # background work of earlier calls ends first
    before = await asyncio.to_thread(_rows, parts.engine)
    code, details = await _send(fuzzed, rpc, request)
    fuzzed.codes[(rpc.method.name, code.name)] += 1
    shown = details[:200]
    assert code not in FAULTS, f"{rpc}: {code.name}: {shown}"
    assert len(details.encode()) <= MAX_MESSAGE_BYTES, f"{rpc}: {len(details.encode())} bytes"
    if code in NOT_REFUSED:
        return
    await parts.tasks.settle()
    after = await asyncio.to_thread(_rows, parts.engine)
    for table in before:
        if table == partner_tasks.name:
            # The retention purge may delete expired rows at any time; nothing may come.
            assert after[table] <= before[table], f"{rpc} ({code.name}) changed {table}"
        else:
            assert after[table] == before[table], f"{rpc} ({code.name}) changed {table}"


def fuzz_rpc(fuzzed: Fuzzed, rpc: Rpc, examples: int, *, derandomize: bool) -> None:
    """Run hypothesis over ``rpc`` (call it from a worker thread; the node runs on the loop)."""
    strategy = MessageStrategies(fuzzed.seeds).of(rpc.method.input_type)

    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        derandomize=derandomize,
        suppress_health_check=list(HealthCheck),
        phases=(Phase.generate, Phase.shrink),
    )
    @given(strategy)
    def check(request: Message) -> None:
        asyncio.run_coroutine_threadsafe(_one(fuzzed, rpc, request), fuzzed.loop).result()

    check()


def _each_rpc() -> Iterator[Rpc]:
    seen = rpcs()
    assert len(seen) == 31, [str(r) for r in seen]
    yield from seen


async def test_every_rpc_survives_hypothesis_made_messages_short_run(tmp_path: Path) -> None:
    started = time.monotonic()
    async with fuzzing(tmp_path, f"sqlite:///{tmp_path / 'rr.db'}") as fuzzed:
        for rpc in _each_rpc():
            await asyncio.to_thread(fuzz_rpc, fuzzed, rpc, SHORT_EXAMPLES, derandomize=True)
    assert time.monotonic() - started < 60, "the short fuzz run must stay short"


@pytest.mark.slow
async def test_every_rpc_survives_hypothesis_made_messages_long_run(
    tmp_path: Path, db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    async with fuzzing(tmp_path, db_url) as fuzzed:
        for rpc in _each_rpc():
            await asyncio.to_thread(fuzz_rpc, fuzzed, rpc, LONG_EXAMPLES, derandomize=False)
    with capsys.disabled():
        print(f"\nfuzz, long run: {fuzzed.summary()}")
        for (method, code), count in sorted(fuzzed.codes.items()):
            print(f"  {method:20} {code:20} {count}")


def test_the_strategies_reach_100_kb_and_out_of_range_enums() -> None:
    strategy = MessageStrategies(Seeds()).of(case_pb2.RunHitNoHitRequest.DESCRIPTOR)
    found: dict[str, bool] = {"big": False, "enum": False}
    request_type = partner_pb2.ReceiveTasksRequest.DESCRIPTOR
    kinds = MessageStrategies(Seeds()).of(request_type)

    @settings(max_examples=400, database=None, derandomize=True, deadline=None)
    @given(strategy, kinds)
    def look(request: Message, tasks: Message) -> None:
        assert isinstance(request, case_pb2.RunHitNoHitRequest)
        assert isinstance(tasks, partner_pb2.ReceiveTasksRequest)
        if len(request.purpose.processing_activity_id) == BIG:
            found["big"] = True
        if any(k not in partner_pb2.TaskKind.values() for k in tasks.kinds):
            found["enum"] = True

    look()
    assert found == {"big": True, "enum": True}


async def test_found_by_fuzzing_a_nul_in_a_query_filter_is_invalid_input(
    tmp_path: Path, db_url: str
) -> None:
    """PostgreSQL refuses NUL in text: the filter came back as INTERNAL (DataError)."""
    async with fuzzing(tmp_path, db_url) as fuzzed:
        rpc = next(r for r in rpcs() if r.method.name == "QueryRecords")
        for query in (
            audit_pb2.AuditQuery(peer="\x00", limit=10),
            audit_pb2.AuditQuery(processing_activity_id="zvh\x00", limit=10),
            audit_pb2.AuditQuery(peer="p" * 256, limit=10),
        ):
            code, details = await _send(fuzzed, rpc, query)
            assert code is grpc.StatusCode.INVALID_ARGUMENT, details
            assert "without NUL" in details
