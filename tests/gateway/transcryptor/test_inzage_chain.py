"""The officer's inzage tool converts the BSN through the node's chain, like the node does."""

from __future__ import annotations

import asyncio
from pathlib import Path

from gateway.audit.inzage import INZAGE_ACTIVITY
from gateway.audit.inzage_chain import chain_pseudonym
from gateway.audit.records import decode
from gateway.audit.store import iter_leaves
from tests.support.pair import Pair
from tests.support.partnerflow import BSN, expected_pseudonym
from tests.support.pki import RR


async def test_the_inzage_pseudonym_comes_through_the_chain_and_each_link_logs_it(
    pair: Pair,
) -> None:
    config = Path(pair.nodes[RR].parts.config.source)
    pseudonym = await asyncio.to_thread(chain_pseudonym, config, BSN)
    assert pseudonym == expected_pseudonym(pair, RR)
    assert pair.chain is not None
    for server in pair.chain.servers:
        with server.parts.audit.engine.connect() as conn:
            records = [decode(data) for _, _, data in iter_leaves(conn) if data is not None]
        assert records[-1].purpose == INZAGE_ACTIVITY
        assert records[-1].categories_asked == [f"Y>{RR}:1"]
