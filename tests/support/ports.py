"""Loopback ports for test nodes that must know their addresses before they start.

A port picked by binding to port 0 is free only "a moment ago": until the
node binds it, anything else on the machine that binds to port 0 (another
pytest-xdist worker, a test server, an outgoing connection) may get it too.
So tests take ports from a block of their own below the kernel's ephemeral
range (32768 and up on Linux), one block per xdist worker, handed out in
turn: nothing else is given these ports, and no two workers share one.
"""

from __future__ import annotations

import itertools
import os
import socket

BASE = int(os.environ.get("SCHAKEL_TEST_PORT_BASE", "20000"))
"""Where the blocks start; a second suite run at the same time on this machine
sets another base (e.g. 26000) so that the two never share a block."""
BLOCK = 1500
"""Ports per worker; 8 workers fit below the ephemeral range."""

_turn = itertools.count()


def _block_start() -> int:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    index = int(worker.removeprefix("gw") or "0")
    return BASE + (index % 8) * BLOCK


def free_port() -> int:
    """A loopback port of this worker's block that is free now."""
    start = _block_start()
    for _ in range(BLOCK):
        port = start + next(_turn) % BLOCK
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free loopback port in {start}-{start + BLOCK - 1}")
