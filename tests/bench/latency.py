"""A TCP relay that adds a fixed one-way delay, to give a loopback link a WAN round trip.

:class:`LatencyRelay` listens on loopback in front of one upstream
``host:port`` and forwards bytes both ways. Every chunk it reads is written
to the other side ``delay`` seconds later, in the order read; reading goes on
while earlier chunks wait, so the link has latency but no bandwidth limit.
A round trip through the relay therefore costs at least ``2 * delay``. The
relay does not look at the bytes: TLS passes through untouched, so the peer
still presents its own certificate and mTLS stays end to end.

Connection set-up is not delayed (no SYN round trip): the TLS and HTTP/2
handshakes still pay their round trips, and the benchmarks warm their
channels before measuring anyway. When either side closes or fails, the
relay delivers what it already read from that side and then closes both.
"""

from __future__ import annotations

import asyncio
import contextlib

CHUNK = 64 * 1024
_EOF = b""


class LatencyRelay:
    """Forwards every connection on :attr:`address` to ``upstream`` with ``delay`` s each way."""

    def __init__(self, upstream: str, delay: float, *, host: str = "127.0.0.1") -> None:
        if delay < 0:
            raise ValueError("delay must not be negative (seconds)")
        upstream_host, _, upstream_port = upstream.rpartition(":")
        if not upstream_host or not upstream_port.isdigit():
            raise ValueError(f"upstream must be host:port, got {upstream!r}")
        self.upstream = upstream
        self.delay = delay
        self._upstream = (upstream_host, int(upstream_port))
        self._host = host
        self._server: asyncio.Server | None = None
        self._closing = False
        self._connections: set[asyncio.Task[None]] = set()
        self._pumps: set[asyncio.Task[None]] = set()

    @property
    def address(self) -> str:
        """``host:port`` to dial instead of the upstream; only valid after :meth:`start`."""
        if self._server is None:
            raise RuntimeError("relay not started")
        port = self._server.sockets[0].getsockname()[1]
        return f"{self._host}:{port}"

    async def start(self) -> str:
        """Listen on a free port; return :attr:`address`."""
        self._server = await asyncio.start_server(self._accept, self._host, 0)
        return self.address

    async def close(self) -> None:
        """Stop listening and close every relayed connection."""
        self._closing = True
        if self._server is not None:
            self._server.close()
        # Cancel the pumps, not the connection handlers: asyncio logs a handler
        # that ends cancelled as an error; a handler whose pumps end closes both
        # sides and returns.
        for pump in list(self._pumps):
            pump.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> LatencyRelay:
        await self.start()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()

    async def _accept(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            try:
                upstream_r, upstream_w = await asyncio.open_connection(*self._upstream)
            except OSError:
                # The upstream is down: the client sees the connection close, as it
                # would see a refused connection, instead of a relay that hangs.
                await _close(client_w)
                return
            try:
                if self._closing:
                    return
                # Either direction ending (EOF, reset, cancel) ends the connection.
                pumps = [
                    asyncio.create_task(self._pump(client_r, upstream_w)),
                    asyncio.create_task(self._pump(upstream_r, client_w)),
                ]
                self._pumps.update(pumps)
                try:
                    await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    for pump in pumps:
                        pump.cancel()
                    await asyncio.gather(*pumps, return_exceptions=True)
                    self._pumps.difference_update(pumps)
            finally:
                await asyncio.gather(_close(upstream_w), _close(client_w))
        finally:
            self._connections.discard(task)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Copy ``reader`` to ``writer``, each chunk ``delay`` s after it was read."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def deliver() -> None:
            while True:
                due, chunk = await queue.get()
                # Sleep until the due time by the loop's own clock, so a timer that
                # fires a hair early never delivers before the configured delay.
                while (wait := due - loop.time()) > 0:
                    await asyncio.sleep(wait)
                if not chunk:
                    return
                writer.write(chunk)
                await writer.drain()

        deliverer = asyncio.create_task(deliver())
        try:
            with contextlib.suppress(ConnectionError):
                while chunk := await reader.read(CHUNK):
                    queue.put_nowait((loop.time() + self.delay, chunk))
            queue.put_nowait((loop.time() + self.delay, _EOF))
            await deliverer
        finally:
            deliverer.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                await deliverer


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(ConnectionError):
        await writer.wait_closed()
