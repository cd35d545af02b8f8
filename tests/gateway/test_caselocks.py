"""Case locks across replicas: two CaseLocks on two engines over one PostgreSQL schema."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from gateway.caselocks import CaseLocks
from gateway.deadline import start_call
from gateway.errors import TimedOutError
from gateway.storage import make_engine
from tests.support.databases import pg_schema_url

pytestmark = pytest.mark.postgres


@pytest.fixture
def engines() -> Iterator[list[sa.Engine]]:
    for url in pg_schema_url():
        made = [make_engine(url), make_engine(url)]
        yield made
        for engine in made:
            engine.dispose()


async def test_an_action_on_a_case_waits_for_the_one_on_another_replica(
    engines: list[sa.Engine],
) -> None:
    a, b = CaseLocks(engines[0]), CaseLocks(engines[1])
    order: list[str] = []
    inside = asyncio.Event()

    async def first() -> None:
        async with a.hold("case-1"):
            inside.set()
            order.append("a-start")
            await asyncio.sleep(0.5)
            order.append("a-end")

    async def second() -> None:
        await inside.wait()
        async with b.hold("case-1"):
            order.append("b")

    async def other_case() -> None:
        await inside.wait()
        async with b.hold("case-2"):
            order.append("other")

    await asyncio.gather(first(), second(), other_case())
    assert order == ["a-start", "other", "a-end", "b"]


async def test_a_wait_past_the_call_deadline_is_refused_and_frees_nothing(
    engines: list[sa.Engine],
) -> None:
    a, b = CaseLocks(engines[0]), CaseLocks(engines[1])
    async with a.hold("case-1"):

        async def impatient() -> None:
            start_call(0.3)
            async with b.hold("case-1"):
                pytest.fail("held a case another replica holds")

        with pytest.raises(TimedOutError, match="on another replica"):
            await asyncio.create_task(impatient())  # its own context: its own call deadline
    async with b.hold("case-1"):  # released by the first: taken at once
        pass
