"""Revocation and expiry reach open streams; streams and connections have a maximum age.

A whole node (real PartnerService, real task broker) serves a partner's
``ReceiveTasks`` stream over mTLS; the test puts FACT_DELIVERY tasks in the
broker the way the uitvraag does, and revokes or lets expire the partner's
certificate while its stream is open.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import grpc
import pytest
from schakel.v1 import partner_pb2, partner_pb2_grpc

from certs.authority import Validity
from gateway.app import Node, open_node
from gateway.config import load_config
from gateway.dev.keys import DevKeys
from gateway.tls import channel_credentials, node_channel
from tests.support.pki import RR, Credential, Federation, LogCapture

StartFullNode = Callable[..., Awaitable[Node]]


@pytest.fixture
async def full_node(federation: Federation, tmp_path: Path) -> AsyncIterator[StartFullNode]:
    """Start one whole node RR with dev keys; ``tls`` adds lines to its [tls] section."""
    started: list[Node] = []

    async def start(tls: str = "") -> Node:
        sections = DevKeys(tmp_path / "keys").node_sections(RR)
        path = federation.write_config(federation.node(RR), extra=tls + "\n" + sections)
        node = open_node(load_config(path, environ={}))
        await node.start()
        started.append(node)
        return node

    yield start
    for node in started:
        await node.stop(grace=None)


class TaskStream:
    """A partner's open ReceiveTasks stream, read in the background."""

    def __init__(self, node: Node, partner: Credential, ca_file: Path) -> None:
        creds = channel_credentials(ca_file, partner.cert_file, partner.key_file)
        self.channel = node_channel(node.address, RR, creds)
        self.call = partner_pb2_grpc.PartnerServiceStub(self.channel).ReceiveTasks(
            partner_pb2.ReceiveTasksRequest()
        )
        self.received: list[str] = []
        self.arrived = asyncio.Event()
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for task in self.call:
            self.received.append(task.task_id)
            self.arrived.set()

    async def next_task(self) -> None:
        await asyncio.wait_for(self.arrived.wait(), 5)
        self.arrived.clear()

    async def ended(self) -> tuple[grpc.StatusCode, str]:
        """How the stream ended: its status and details."""
        try:
            await asyncio.wait_for(self.reader, 10)
        except grpc.aio.AioRpcError as exc:
            return exc.code(), exc.details() or ""
        return grpc.StatusCode.OK, ""

    async def close(self) -> None:
        self.reader.cancel()
        await self.channel.close(None)


async def _deliver(node: Node, org_id: str) -> str:
    """Queue one FACT_DELIVERY task for ``org_id``; its task id."""
    task = partner_pb2.PartnerTask(kind=partner_pb2.TASK_KIND_FACT_DELIVERY)
    pending = await node.parts.tasks.send(org_id, task, subject="", timeout=60)
    return pending.task.task_id


async def _until_streaming(node: Node, org_id: str) -> None:
    for _ in range(100):
        if node.parts.tasks.streams(org_id):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{org_id} never opened its task stream")


async def test_revoking_a_partner_mid_stream_stops_its_tasks_within_one_crl_reload(
    federation: Federation, full_node: StartFullNode, logs: LogCapture
) -> None:
    node = await full_node()
    politie = federation.partner(RR, "politie-rr", "politie")
    ggz = federation.partner(RR, "ggz-rr", "ggz")
    revoked, kept = (
        TaskStream(node, politie, federation.ca_file),
        TaskStream(node, ggz, federation.ca_file),
    )
    try:
        await _until_streaming(node, "politie-rr")
        await _until_streaming(node, "ggz-rr")
        first = await _deliver(node, "politie-rr")
        await revoked.next_task()
        assert revoked.received == [first]

        federation.revoke(politie)  # one CRL published, nothing else
        withheld = await _deliver(node, "politie-rr")
        code, details = await revoked.ended()
        assert code is grpc.StatusCode.UNAUTHENTICATED
        assert "revoked" in details
        assert withheld not in revoked.received

        # Another partner's stream on the same node keeps receiving.
        other = await _deliver(node, "ggz-rr")
        await kept.next_task()
        assert kept.received == [other]
    finally:
        await revoked.close()
        await kept.close()
    refused = [e for e in logs.events("rpc") if e["method"].endswith("ReceiveTasks")]
    assert [e["status"] for e in refused] == ["UNAUTHENTICATED"]


async def test_a_certificate_expiring_mid_stream_stops_the_stream(
    federation: Federation, full_node: StartFullNode
) -> None:
    node = await full_node()
    now = dt.datetime.now(dt.UTC)
    short = federation.partner(
        RR,
        "politie-rr",
        "politie",
        validity=Validity(now - dt.timedelta(minutes=1), now + dt.timedelta(seconds=3)),
    )
    stream = TaskStream(node, short, federation.ca_file)
    try:
        await _until_streaming(node, "politie-rr")
        first = await _deliver(node, "politie-rr")
        await stream.next_task()
        await asyncio.sleep(
            max(0.0, (short.cert.not_valid_after_utc - dt.datetime.now(dt.UTC)).total_seconds())
            + 0.5
        )
        late = await _deliver(node, "politie-rr")
        code, details = await stream.ended()
    finally:
        await stream.close()
    assert code is grpc.StatusCode.UNAUTHENTICATED
    assert "expired" in details
    assert stream.received == [first]
    assert late not in stream.received


async def test_a_stream_ends_at_its_maximum_age_and_a_new_one_gets_the_waiting_task(
    federation: Federation, full_node: StartFullNode, logs: LogCapture
) -> None:
    node = await full_node(tls="max_connection_age_seconds = 1\n")
    politie = federation.partner(RR, "politie-rr", "politie")
    stream = TaskStream(node, politie, federation.ca_file)
    try:
        await _until_streaming(node, "politie-rr")
        code, _ = await stream.ended()
    finally:
        await stream.close()
    assert code is grpc.StatusCode.OK
    assert logs.events("stream_aged_out")
    # The partner opens a new stream, as its runner does, and is served as before.
    again = TaskStream(node, politie, federation.ca_file)
    try:
        await _until_streaming(node, "politie-rr")
        task_id = await _deliver(node, "politie-rr")
        await again.next_task()
        assert again.received == [task_id]
    finally:
        await again.close()
