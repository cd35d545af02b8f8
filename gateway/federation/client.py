"""The node's client for its peers: one mTLS channel per peer and bounded parallel fan-out.

A fan-out sends one call to every peer at once (at most ``concurrency`` in
flight), each with what remains of one shared deadline, so asking 30 nodes
costs about one round trip. Only idempotent calls are retried, and only
when the peer was unreachable (``UNAVAILABLE``), with a short backoff that
stays inside the deadline. Every peer that does not answer is named in
:attr:`FanOut.unanswered` with a reason: :data:`DOWN`, :data:`DEADLINE` or
:data:`REFUSED`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Generic, TypeVar

import grpc
from schakel.v1 import common_pb2, federation_pb2, federation_pb2_grpc

from gateway.federation.directory import Peer
from gateway.logging import get_logger
from gateway.tls import ClientCertificates, credentials_now, node_channel

log = get_logger("federation.client")

T = TypeVar("T")
Reply = TypeVar("Reply")

DOWN = "down"
"""The peer could not be reached (connection refused, TLS failure, unknown peer)."""
DEADLINE = "deadline"
"""The peer did not answer within the deadline."""
REFUSED = "refused"
"""The peer answered with an error (not allowed, bad request, internal failure)."""

DEFAULT_CONCURRENCY = 32
BACKOFF_SECONDS = 0.05
MAX_ATTEMPTS = 3


@dataclass(frozen=True)
class PeerHit:
    """One peer's answer to a federated hit/no-hit."""

    node_id: str
    hit: bool
    contact_handle: str
    """The peer's procesregisseur contact on a hit, "" otherwise."""


@dataclass(frozen=True)
class FanOut(Generic[T]):
    """The answers of a fan-out, and the peers that gave none."""

    answers: dict[str, T]
    """Node id -> answer."""
    unanswered: dict[str, str]
    """Node id -> reason (:data:`DOWN`, :data:`DEADLINE` or :data:`REFUSED`)."""

    @property
    def complete(self) -> bool:
        """True when every peer asked answered."""
        return not self.unanswered


class PeerCallError(Exception):
    """A call to one peer failed; ``reason`` is DOWN, DEADLINE or REFUSED."""

    def __init__(self, node_id: str, reason: str, code: grpc.StatusCode | None) -> None:
        detail = f" ({code.name})" if code is not None else ""
        super().__init__(f"peer {node_id!r}: {reason}{detail}")
        self.node_id = node_id
        self.reason = reason
        self.code = code


def _reason(code: grpc.StatusCode) -> str:
    if code is grpc.StatusCode.UNAVAILABLE:
        return DOWN
    if code is grpc.StatusCode.DEADLINE_EXCEEDED:
        return DEADLINE
    return REFUSED


if TYPE_CHECKING:
    # The async stub type exists only in the generated type stubs.
    Stub = federation_pb2_grpc.FederationServiceAsyncStub


class PeerClient:
    """Calls peer nodes over mTLS; peers come from ``peers()`` on every call (hot reload).

    ``peers`` returns the nodes to talk to (this node already left out);
    ``credentials`` are the node's own client credentials: with
    :class:`~gateway.tls.ClientCertificates` they follow the certificate and
    key files, so the next call after a rotation presents the new
    certificate. Channels are made on first use and kept; a peer whose
    address changes, or any peer after a rotation, gets a new one (the old
    one finishes its calls in flight).
    """

    def __init__(
        self,
        node_id: str,
        peers: Callable[[], Sequence[Peer]],
        credentials: grpc.ChannelCredentials | ClientCertificates,
        *,
        concurrency: int = DEFAULT_CONCURRENCY,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.node_id = node_id
        self._peers = peers
        self._credentials = credentials
        self._concurrency = concurrency
        self._channels: dict[str, tuple[str, int, grpc.aio.Channel]] = {}
        self._semaphores: dict[asyncio.AbstractEventLoop, asyncio.Semaphore] = {}
        self._closing: set[asyncio.Task[None]] = set()

    def peers(self) -> list[Peer]:
        """The peers in force now (never this node itself)."""
        return [p for p in self._peers() if p.node_id != self.node_id]

    def _stub(self, peer: Peer) -> Stub:
        generation, credentials = credentials_now(self._credentials)
        known = self._channels.get(peer.node_id)
        if known is None or known[:2] != (peer.address, generation):
            if known is not None:
                # The old channel may still carry calls; let them finish.
                task = asyncio.get_running_loop().create_task(known[2].close(grace=5.0))
                self._closing.add(task)
                task.add_done_callback(self._closing.discard)
            channel = node_channel(peer.address, peer.node_id, credentials)
            known = (peer.address, generation, channel)
            self._channels[peer.node_id] = known
        return federation_pb2_grpc.FederationServiceStub(known[2])

    def _semaphore(self) -> asyncio.Semaphore:
        loop = asyncio.get_running_loop()
        semaphore = self._semaphores.get(loop)
        if semaphore is None:
            semaphore = self._semaphores[loop] = asyncio.Semaphore(self._concurrency)
        return semaphore

    async def close(self) -> None:
        """Close every channel."""
        channels = [channel for _address, _generation, channel in self._channels.values()]
        self._channels.clear()
        for channel in channels:
            await channel.close(None)
        for task in list(self._closing):
            await task

    async def _call(
        self,
        peer: Peer,
        call: Callable[[Stub, float], Awaitable[Reply]],
        end: float,
        *,
        idempotent: bool,
    ) -> Reply:
        """One call to ``peer`` before ``end`` (monotonic); raise PeerCallError on failure."""
        stub = self._stub(peer)
        attempts = MAX_ATTEMPTS if idempotent else 1
        code: grpc.StatusCode | None = None
        for attempt in range(attempts):
            remaining = end - time.monotonic()
            if remaining <= 0:
                break
            try:
                return await call(stub, remaining)
            except grpc.aio.AioRpcError as exc:
                code = exc.code()
                if code is not grpc.StatusCode.UNAVAILABLE or attempt + 1 == attempts:
                    raise PeerCallError(peer.node_id, _reason(code), code) from exc
            backoff = BACKOFF_SECONDS * (2**attempt)
            if time.monotonic() + backoff >= end:
                break
            await asyncio.sleep(backoff)
        reason = DOWN if code is grpc.StatusCode.UNAVAILABLE else DEADLINE
        raise PeerCallError(peer.node_id, reason, code)

    async def fan_out(
        self,
        method: str,
        call: Callable[[Peer, Stub, float], Awaitable[Reply]],
        *,
        deadline: float,
        only: Collection[str] | None = None,
        idempotent: bool,
    ) -> FanOut[Reply]:
        """Call every peer (or those in ``only``) in parallel within ``deadline`` seconds.

        A node id in ``only`` that the directory does not list is unanswered
        with :data:`DOWN`: there is nowhere to dial.
        """
        if deadline <= 0:
            raise ValueError("deadline must be positive (seconds)")
        end = time.monotonic() + deadline
        peers = self.peers()
        unanswered: dict[str, str] = {}
        if only is not None:
            listed = {p.node_id for p in peers}
            unanswered = {node_id: DOWN for node_id in only if node_id not in listed}
            peers = [p for p in peers if p.node_id in only]
        semaphore = self._semaphore()

        async def one(peer: Peer) -> Reply:
            async with semaphore:
                return await self._call(
                    peer, lambda stub, left: call(peer, stub, left), end, idempotent=idempotent
                )

        results = await asyncio.gather(*(one(p) for p in peers), return_exceptions=True)
        answers: dict[str, Reply] = {}
        for peer, result in zip(peers, results, strict=True):
            if isinstance(result, PeerCallError):
                unanswered[peer.node_id] = result.reason
                log.warning(
                    "peer_unanswered",
                    method=method,
                    peer=peer.node_id,
                    reason=result.reason,
                    code=result.code.name if result.code is not None else "",
                )
            elif isinstance(result, BaseException):
                raise result
            else:
                answers[peer.node_id] = result
        return FanOut(answers, unanswered)

    async def hit_no_hit(
        self,
        *,
        purpose: str,
        case_ref: common_pb2.CaseRef,
        phase: int,
        subject_for: Callable[[str], common_pb2.EncryptedPseudonym],
        deadline: float,
        only: Collection[str] | None = None,
    ) -> FanOut[PeerHit]:
        """Ask every peer whether the subject is in an active case there.

        ``subject_for(node_id)`` gives the subject transcrypted to that
        node's domain; ``deadline`` is in seconds from now and bounds the
        whole fan-out, retries included.
        """

        async def call(peer: Peer, stub: Stub, timeout: float) -> PeerHit:
            request = federation_pb2.FederatedHitRequest(
                purpose=common_pb2.Purpose(processing_activity_id=purpose),
                case_ref=case_ref,
                subject=subject_for(peer.node_id),
                phase=phase,  # type: ignore[arg-type]
            )
            reply = await stub.HitNoHit(request, timeout=timeout)
            return PeerHit(peer.node_id, reply.hit, reply.contact_handle if reply.hit else "")

        return await self.fan_out("HitNoHit", call, deadline=deadline, only=only, idempotent=True)

    async def request_facts(
        self,
        *,
        purpose: str,
        case_ref: common_pb2.CaseRef,
        phase: int,
        subject_for: Callable[[str], common_pb2.EncryptedPseudonym],
        categories: Sequence[str],
        recipient_org_type: str,
        deadline: float,
        only: Collection[str] | None = None,
    ) -> FanOut[federation_pb2.FederatedFactsResponse]:
        """Ask peers (usually ``only`` those with a hit) for facts under their policy.

        Each answer carries the minimised facts the peer's policy released and
        its decision (what was withheld and why).
        """

        async def call(
            peer: Peer, stub: Stub, timeout: float
        ) -> federation_pb2.FederatedFactsResponse:
            request = federation_pb2.FederatedFactsRequest(
                purpose=common_pb2.Purpose(processing_activity_id=purpose),
                case_ref=case_ref,
                subject=subject_for(peer.node_id),
                phase=phase,  # type: ignore[arg-type]
                categories=list(categories),
                recipient_org_type=recipient_org_type,
            )
            return await stub.RequestFacts(request, timeout=timeout)

        return await self.fan_out(
            "RequestFacts", call, deadline=deadline, only=only, idempotent=True
        )

    async def ask_participant(
        self, to: str, request: federation_pb2.AskParticipantRequest, *, deadline: float
    ) -> federation_pb2.AskParticipantResponse:
        """Put an uitvraag to a participant connected to node ``to``; PeerCallError if unanswered.

        ``deadline`` (seconds) bounds the call, retries included; it must
        leave the peer time to wait ``request.deadline_ms`` for its partner.
        """
        return await self._call_one(
            to,
            "AskParticipant",
            lambda stub, timeout: stub.AskParticipant(request, timeout=timeout),
            deadline=deadline,
            idempotent=True,
        )

    async def deliver_facts(
        self, to: str, request: federation_pb2.DeliverFactsRequest, *, deadline: float
    ) -> federation_pb2.DeliverFactsResponse:
        """Deliver facts to a participant connected to node ``to``; PeerCallError if not taken.

        Never retried: a delivery that reached the peer but whose answer was
        lost would otherwise be queued twice.
        """
        return await self._call_one(
            to,
            "DeliverFacts",
            lambda stub, timeout: stub.DeliverFacts(request, timeout=timeout),
            deadline=deadline,
            idempotent=False,
        )

    async def link_case(
        self, to: str, request: federation_pb2.LinkCaseRequest, *, deadline: float
    ) -> federation_pb2.LinkCaseResponse:
        """Tell node ``to`` its link for a case of this node; PeerCallError if not taken.

        Retried while the peer is unreachable: a link only grows, so taking
        the same state twice changes nothing.
        """
        return await self._call_one(
            to,
            "LinkCase",
            lambda stub, timeout: stub.LinkCase(request, timeout=timeout),
            deadline=deadline,
            idempotent=True,
        )

    async def _call_one(
        self,
        to: str,
        method: str,
        send: Callable[[Stub, float], Awaitable[Reply]],
        *,
        deadline: float,
        idempotent: bool,
    ) -> Reply:
        """One call to node ``to`` under the fan-out's deadline and retry rules."""

        async def call(peer: Peer, stub: Stub, timeout: float) -> Reply:
            return await send(stub, timeout)

        result = await self.fan_out(
            method, call, deadline=deadline, only=[to], idempotent=idempotent
        )
        if to in result.answers:
            return result.answers[to]
        raise PeerCallError(to, result.unanswered.get(to, DOWN), None)

    async def transfer_case(
        self,
        *,
        to: str,
        purpose: str,
        case_ref: common_pb2.CaseRef,
        subject: common_pb2.EncryptedPseudonym,
        theme: str,
        phase: int,
        bottlenecks: Sequence[str],
        idempotency_key: str,
        deadline: float,
    ) -> federation_pb2.TransferCaseResponse:
        """Hand a case over to node ``to``; raise PeerCallError when it did not take it.

        ``subject`` must already be in ``to``'s domain. The idempotency key
        makes the call safe to retry: the peer answers a repeat with the case
        of the first transfer (``created`` false).
        """
        if not idempotency_key:
            raise ValueError("a transfer needs an idempotency key, so a retry cannot open twice")
        request = federation_pb2.TransferCaseRequest(
            purpose=common_pb2.Purpose(processing_activity_id=purpose),
            case_ref=case_ref,
            subject=subject,
            theme=theme,
            phase=phase,  # type: ignore[arg-type]
            bottlenecks=list(bottlenecks),
            idempotency_key=idempotency_key,
        )
        return await self._call_one(
            to,
            "TransferCase",
            lambda stub, timeout: stub.TransferCase(request, timeout=timeout),
            deadline=deadline,
            idempotent=True,
        )
