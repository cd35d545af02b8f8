"""The node's client for the transcryptor chain: every link in order, in batches, over mTLS.

A conversion from domain ``a`` to ``b`` goes through the ``n`` transcryptors
the node config lists, in that order: each one's answer is the next one's
input, and only the last one's is under ``b``'s key. One call carries a
whole batch (one subject asked of 30 peers is one call per transcryptor);
a batch larger than ``batch_size`` is split and up to ``in_flight`` parts
travel at once, so the links work as a pipeline while no part waits in a
transcryptor's queue long enough to use up its deadline. Each channel is
pinned to the transcryptor's own certificate
(:func:`certs.identity.transcryptor_dns_name`) and rebuilt after a rotation
of the node's client certificate.

A transcryptor's refusal comes back as the matching
:class:`~gateway.errors.SchakelError` naming that transcryptor, so the
node's own audit log records why a subject did not leave.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import grpc
from schakel.v1 import common_pb2, transcryptor_pb2, transcryptor_pb2_grpc

from certs.identity import transcryptor_dns_name
from gateway.errors import (
    DeniedError,
    ExhaustedError,
    InvalidInputError,
    SchakelError,
    UnavailableError,
)
from gateway.logging import get_logger
from gateway.tls import ClientCertificates, credentials_now
from gateway.tracing import TracePropagator
from policy.pseudonyms import Ciphertext, PseudonymError

log = get_logger("chain")

GLOBAL = ""
"""``from_domain`` of a fresh encryption under the federation key Y."""

_REFUSALS: dict[grpc.StatusCode, type[SchakelError]] = {
    grpc.StatusCode.PERMISSION_DENIED: DeniedError,
    grpc.StatusCode.UNAUTHENTICATED: DeniedError,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ExhaustedError,
    grpc.StatusCode.INVALID_ARGUMENT: InvalidInputError,
}


@dataclass(frozen=True)
class Link:
    """One transcryptor of the chain: its id and where it listens."""

    id: str
    address: str


if TYPE_CHECKING:
    # The async stub type exists only in the generated type stubs.
    Stub = transcryptor_pb2_grpc.TranscryptorServiceAsyncStub

Item = tuple[Ciphertext, str]
"""A ciphertext and the domain it is to be converted to."""


class TranscryptorChain:
    """Calls the transcryptors in their configured order; safe to share within one event loop."""

    def __init__(
        self,
        links: Sequence[Link],
        credentials: ClientCertificates | grpc.ChannelCredentials,
        *,
        batch_size: int = 1024,
        in_flight: int = 4,
        timeout: float = 10.0,
    ) -> None:
        if not links:
            raise ValueError("a transcryptor chain needs at least one transcryptor")
        self.links = list(links)
        self._credentials = credentials
        self.batch_size = batch_size
        self.in_flight = in_flight
        self.timeout = timeout
        self._channels: dict[str, tuple[int, grpc.aio.Channel]] = {}
        self._closing: set[asyncio.Task[None]] = set()

    def _stub(self, link: Link) -> Stub:
        generation, credentials = credentials_now(self._credentials)
        known = self._channels.get(link.id)
        if known is None or known[0] != generation:
            channel = grpc.aio.secure_channel(
                link.address,
                credentials,
                options=[("grpc.ssl_target_name_override", transcryptor_dns_name(link.id))],
                # grpc-stubs declares the aio interceptor list with a placeholder type.
                interceptors=[TracePropagator()],  # type: ignore[list-item]
            )
            if known is not None:
                # Calls in flight on the old channel may finish; it is dropped after that.
                task = asyncio.get_running_loop().create_task(known[1].close(grace=5.0))
                self._closing.add(task)
                task.add_done_callback(self._closing.discard)
            known = (generation, channel)
            self._channels[link.id] = known
        return transcryptor_pb2_grpc.TranscryptorServiceStub(known[1])

    async def transcrypt(
        self, items: Sequence[Item], *, from_domain: str | None, activity: str
    ) -> list[Ciphertext]:
        """Every item converted from ``from_domain`` (None: Y) to its domain, in order."""
        if not items:
            return []
        size = self.batch_size
        gate = asyncio.Semaphore(self.in_flight)

        async def part(start: int) -> list[Ciphertext]:
            async with gate:
                return await self._through_chain(
                    items[start : start + size], from_domain or GLOBAL, activity
                )

        done = await asyncio.gather(*(part(i) for i in range(0, len(items), size)))
        return [ct for part in done for ct in part]

    async def _through_chain(
        self, items: Sequence[Item], from_domain: str, activity: str
    ) -> list[Ciphertext]:
        subjects = [ct.to_proto() for ct, _ in items]
        targets = [domain for _, domain in items]
        for link in self.links:
            request = transcryptor_pb2.TranscryptRequest(
                from_domain=from_domain,
                purpose=common_pb2.Purpose(processing_activity_id=activity),
                items=[
                    transcryptor_pb2.TranscryptItem(subject=s, to_domain=d)
                    for s, d in zip(subjects, targets, strict=True)
                ],
            )
            reply = await self._call(link, request)
            if len(reply.subjects) != len(subjects):
                raise UnavailableError(
                    f"transcryptor {link.id} answered {len(reply.subjects)} subjects "
                    f"for {len(subjects)}"
                )
            subjects = list(reply.subjects)
        try:
            return [Ciphertext.from_proto(s) for s in subjects]
        except PseudonymError as exc:
            raise UnavailableError(
                f"the transcryptor chain answered a bad ciphertext: {exc}"
            ) from None

    async def _call(
        self, link: Link, request: transcryptor_pb2.TranscryptRequest
    ) -> transcryptor_pb2.TranscryptResponse:
        try:
            reply: transcryptor_pb2.TranscryptResponse = await self._stub(link).Transcrypt(
                request, timeout=self.timeout
            )
        except grpc.aio.AioRpcError as exc:
            raise _refusal(link, exc) from None
        return reply

    async def enrol(self) -> list[transcryptor_pb2.EnrolResponse]:
        """Every transcryptor's factor of the caller's own domain, in chain order."""
        replies = []
        for link in self.links:
            try:
                reply = await self._stub(link).Enrol(
                    transcryptor_pb2.EnrolRequest(), timeout=self.timeout
                )
            except grpc.aio.AioRpcError as exc:
                raise _refusal(link, exc) from None
            if reply.transcryptor_id != link.id:
                raise UnavailableError(
                    f"transcryptor {link.id} answered as {reply.transcryptor_id!r}"
                )
            replies.append(reply)
        return replies

    async def close(self) -> None:
        """Close every channel."""
        channels = [channel for _, channel in self._channels.values()]
        self._channels.clear()
        for channel in channels:
            await channel.close(None)
        for task in list(self._closing):
            await task


def _refusal(link: Link, exc: grpc.aio.AioRpcError) -> SchakelError:
    code = exc.code()
    log.warning("transcryptor_refused", transcryptor=link.id, code=code.name)
    kind = _REFUSALS.get(code)
    if kind is not None:
        return kind(f"transcryptor {link.id} refused: {exc.details()}")
    return UnavailableError(
        f"transcryptor {link.id} did not convert the subjects ({code.name}); try again later"
    )
