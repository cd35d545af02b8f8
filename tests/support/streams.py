"""Waiting until partners' task streams are open."""

from __future__ import annotations

import asyncio

from tests.support.caseflow import node
from tests.support.flow import Flow


async def until_streams(flow: Flow, org_id: str, count: int) -> None:
    broker = node(flow).parts.tasks
    for _ in range(300):
        if broker.streams(org_id) == count:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{org_id} has {broker.streams(org_id)} streams, not {count}")
