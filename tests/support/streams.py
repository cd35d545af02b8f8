"""Partners' task streams and node restarts, as the delivery tests drive them."""

from __future__ import annotations

import asyncio

from gateway.app import Node, open_node
from gateway.config import load_config
from tests.support.caseflow import node
from tests.support.flow import Flow
from tests.support.pki import RR


async def until_streams(flow: Flow, org_id: str, count: int) -> None:
    broker = node(flow).parts.tasks
    for _ in range(300):
        if broker.streams(org_id) == count:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{org_id} has {broker.streams(org_id)} streams, not {count}")


async def restart(flow: Flow) -> Node:
    """Stop RR and open it again on the same config, database and keys."""
    old = flow.pair.nodes.pop(RR)
    await old.stop(grace=None)
    old.parts.engine.dispose()
    path = flow.pair.fed.root / f"{RR}.toml"
    started = open_node(load_config(path, environ={}))
    await started.start()
    flow.pair.nodes[RR] = started
    return started
