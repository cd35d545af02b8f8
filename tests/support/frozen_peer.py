"""A TCP relay in front of a peer node that can freeze, as a peer stopped with SIGSTOP does.

While :meth:`FreezingRelay.freeze` is in force the relay keeps every
connection open and accepts new ones, but moves no byte either way: the
caller's TLS and HTTP/2 see a peer whose kernel still holds the connection
while the process behind it does nothing. :meth:`FreezingRelay.thaw` lets
the bytes flow again. The relay never looks at the bytes, so mTLS stays end
to end between the nodes.
"""

from __future__ import annotations

import asyncio
import contextlib

CHUNK = 64 * 1024


class FreezingRelay:
    """Forwards every connection on :attr:`address` to :attr:`upstream` unless frozen."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.upstream = ""
        """``host:port`` of the peer; set before the first connection comes."""
        self._host = host
        self._server: asyncio.Server | None = None
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._connections: set[asyncio.Task[None]] = set()

    @property
    def address(self) -> str:
        """``host:port`` to dial instead of the peer; only valid after :meth:`start`."""
        if self._server is None:
            raise RuntimeError("relay not started")
        return f"{self._host}:{self._server.sockets[0].getsockname()[1]}"

    async def start(self) -> str:
        """Listen on a free loopback port; return :attr:`address`."""
        self._server = await asyncio.start_server(self._accept, self._host, 0)
        return self.address

    def freeze(self) -> None:
        """Stop moving bytes; connections stay open and new ones are accepted."""
        self._flowing.clear()

    def thaw(self) -> None:
        """Move bytes again."""
        self._flowing.set()

    async def close(self) -> None:
        """Stop listening and drop every connection."""
        if self._server is not None:
            self._server.close()
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    async def _accept(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        upstream_w: asyncio.StreamWriter | None = None
        try:
            await self._flowing.wait()
            host, _, port = self.upstream.rpartition(":")
            try:
                upstream_r, upstream_w = await asyncio.open_connection(host, int(port))
            except OSError:
                return
            pumps = [
                asyncio.create_task(self._pump(client_r, upstream_w)),
                asyncio.create_task(self._pump(upstream_r, client_w)),
            ]
            try:
                await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for pump in pumps:
                    pump.cancel()
                await asyncio.gather(*pumps, return_exceptions=True)
        except asyncio.CancelledError:
            pass
        finally:
            for writer in (upstream_w, client_w):
                if writer is not None:
                    writer.close()
                    with contextlib.suppress(ConnectionError, asyncio.CancelledError):
                        await writer.wait_closed()
            self._connections.discard(task)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while True:
                await self._flowing.wait()
                chunk = await reader.read(CHUNK)
                if not chunk:
                    return
                await self._flowing.wait()
                writer.write(chunk)
                await writer.drain()
