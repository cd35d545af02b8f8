"""Two whole nodes with local partners, and partner systems simulated by working adapters.

A :class:`MemoryPartner` is a real adapter over a small in-memory record
set: it builds its pseudonym index through the node's Pseudonymise (so it
never shares an identifier with the node) and is served by the real
:class:`adapters.sdk.AdapterRunner` over an mTLS task stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from schakel.v1 import common_pb2, federation_pb2, federation_pb2_grpc, partner_pb2

from adapters.sdk import (
    AdapterRunner,
    PartnerClient,
    RetryPolicy,
    SubjectRow,
    decrypt_subject,
    encrypt_subject,
)
from certs.ca_store import node_dns_name
from tests.support.pki import HL, RR, logs

__all__ = ["logs"]
from policy.pseudonyms import Ciphertext, subject_point
from policy.pseudonyms.hazmat.group import mul
from tests.support.pair import Pair, start_pair, stop_pair

ACTIVITY = "zvh.complexe-casuistiek"
PARTNERS = {
    RR: [("politie-rr", "politie"), ("ggz-rr", "ggz"), ("gemeente-rr", "gemeente")],
    HL: [("ggz-hl", "ggz")],
}


@dataclass
class Record:
    """What a simulated partner holds about one person."""

    contact: str
    facts: list[common_pb2.Fact] = field(default_factory=list)


class MemoryPartner:
    """An adapter over in-memory records, keyed by BSN, with a pseudonym index."""

    def __init__(self, records: dict[str, Record], *, delay: float = 0.0) -> None:
        self.records = records
        self.delay = delay
        self.index: dict[str, str] = {}
        """The partner's own domain pseudonym -> BSN, built by :meth:`build_index`."""
        self.delivered: list[tuple[str | None, partner_pb2.PartnerTask]] = []
        self.asked: list[tuple[str, tuple[str, ...]]] = []

    async def build_index(self, client: PartnerClient, y: bytes, domain_key: bytes) -> None:
        """Pseudonymise every local BSN through the node into this partner's domain."""
        bsns = sorted(self.records)
        if not bsns:
            return
        moved = await client.pseudonymise(
            [encrypt_subject("bsn", b, y) for b in bsns], purpose=ACTIVITY
        )
        self.index = {decrypt_subject(m, domain_key): b for m, b in zip(moved, bsns, strict=True)}

    def subjects(self) -> Iterable[SubjectRow]:
        """Every local record."""
        return [SubjectRow(b, "bsn", b) for b in self.records]

    def known(self, pseudonym_hex: str) -> str | None:
        """The contact when the subject is in the records."""
        if self.delay:
            time.sleep(self.delay)
        bsn = self.index.get(pseudonym_hex)
        return self.records[bsn].contact if bsn is not None else None

    def facts(self, pseudonym_hex: str, categories: Sequence[str]) -> list[common_pb2.Fact]:
        """The facts of the asked categories about the subject."""
        self.asked.append((pseudonym_hex, tuple(categories)))
        bsn = self.index.get(pseudonym_hex)
        if bsn is None:
            return []
        return [f for f in self.records[bsn].facts if f.category in categories]

    def deliver(self, pseudonym_hex: str, task: partner_pb2.PartnerTask) -> None:
        """Keep a delivery, with the BSN it resolved to in this partner's own index."""
        self.delivered.append((self.index.get(pseudonym_hex), task))


@dataclass
class Flow:
    """The pair of nodes, and helpers to run simulated partners against them."""

    pair: Pair
    stack: contextlib.AsyncExitStack

    @property
    def y(self) -> bytes:
        """The federation public key Y."""
        return self.pair.keys.global_public_key()

    def client(self, node_id: str, org_id: str, org_type: str) -> PartnerClient:
        """An SDK client with ``org_id``'s certificate (issued on first use)."""
        cred = self.pair.fed.partner(node_id, org_id, org_type, force=True)
        return PartnerClient.connect(
            self.pair.nodes[node_id].address,
            certificate_chain=cred.cert_file.read_bytes(),
            private_key=cred.key_file.read_bytes(),
            root_certificates=self.pair.fed.ca_file.read_bytes(),
            server_name=node_dns_name(node_id),
            timeout=5.0,
            retry=RetryPolicy(max_attempts=2, initial_backoff=0.05, max_backoff=0.1),
        )

    def subject_at(self, node_id: str, bsn: str) -> common_pb2.EncryptedPseudonym:
        """``bsn`` as a peer sends it to ``node_id``: converted to that node's domain.

        Converted here through the same chain (the tests' keys hold every share).
        """
        sent = Ciphertext.from_proto(encrypt_subject("bsn", bsn, self.y))
        return self.pair.keys.chain().transcrypt(sent, node_id).to_proto()

    def pseudonym_at(self, node_id: str, bsn: str) -> str:
        """``bsn``'s pseudonym in ``node_id``'s own domain, as its registry and log hold it."""
        factor = self.pair.keys.chain().pseudonymisation_factor(node_id)
        return mul(factor, subject_point("bsn", bsn), "test").hex()

    async def link(
        self,
        at: str,
        by: str,
        case_ref: common_pb2.CaseRef,
        bsn: str,
        participants: Sequence[tuple[str, str]],
        org_types: Sequence[str],
        *,
        phase: common_pb2.Phase.ValueType = common_pb2.PHASE_CASUSOVERLEG,
        activity: str = ACTIVITY,
    ) -> federation_pb2.LinkCaseResponse:
        """Node ``by`` tells node ``at`` its link for ``case_ref`` over mTLS (LinkCase).

        ``participants`` are (org id, org type) pairs of partners of ``at``.
        """
        request = federation_pb2.LinkCaseRequest(
            purpose=common_pb2.Purpose(processing_activity_id=activity),
            case_ref=case_ref,
            subject=self.subject_at(at, bsn),
            phase=phase,
            participants=[
                common_pb2.Participant(org_id=o, org_type=t, node_id=at) for o, t in participants
            ],
            participant_org_types=list(org_types),
        )
        async with self.pair.channel(at, self.pair.fed.node(by, force=True)) as channel:
            stub = federation_pb2_grpc.FederationServiceStub(channel)
            reply: federation_pb2.LinkCaseResponse = await stub.LinkCase(request, timeout=10)
        return reply

    async def run_partner(
        self, node_id: str, org_id: str, org_type: str, adapter: MemoryPartner
    ) -> AdapterRunner:
        """Index ``adapter``'s records and serve its tasks until the test ends."""
        client = self.client(node_id, org_id, org_type)
        self.stack.push_async_callback(client.close)
        domain_key = self.pair.keys.domain(org_id)
        await adapter.build_index(client, self.y, domain_key.secret_key)
        runner = AdapterRunner(client, adapter, keys=domain_key)
        job = asyncio.create_task(runner.run())

        async def stop() -> None:
            runner.stop()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(job, 5)

        self.stack.push_async_callback(stop)
        broker = self.pair.nodes[node_id].parts.tasks
        for _ in range(200):
            if broker.streams(org_id):
                break
            await asyncio.sleep(0.01)
        assert broker.streams(org_id) == 1, f"{org_id} did not open its task stream"
        return runner


def partner_sections(node_id: str) -> str:
    """The ``[[partners]]`` sections of a node's simulated partners."""
    return "".join(
        f'\n[[partners]]\nid = "{org}"\norg_type = "{kind}"\n' for org, kind in PARTNERS[node_id]
    )


@contextlib.asynccontextmanager
async def running_flow(
    root: Path,
    db_url: str,
    sections: Callable[[str], str] = partner_sections,
    **start: Callable[[str, str, str], str],
) -> AsyncIterator[Flow]:
    """RR (on ``db_url``) and HL (SQLite) with ``sections(node_id)`` as their partners;
    ``start`` goes to :func:`tests.support.pair.start_pair` (``dial``)."""
    pair = await start_pair(root, db_url, sections, **start)
    try:
        async with contextlib.AsyncExitStack() as stack:
            yield Flow(pair, stack)
    finally:
        await stop_pair(pair)


@pytest.fixture
async def flow(tmp_path: Path, db_url: str) -> AsyncIterator[Flow]:
    """RR (on ``db_url``) and HL (SQLite) with local partners; each witnesses the other."""
    async with running_flow(tmp_path, db_url) as started:
        yield started
