"""A node-like writer process for the multi-process and crash tests.

Run as ``python -m tests.support.audit_writer URL ACK_FILE SECONDS`` or through
:func:`run` in a forked process. Appends
bursts of records through the async group-commit API and, after each burst
is acknowledged (committed), writes ``<index> <span_id>`` lines to ACK_FILE
and flushes, so a parent that kills this process knows what was promised.
"""

from __future__ import annotations

import asyncio
import sys
import time

from gateway.audit.store import AuditLog
from gateway.storage import make_engine
from tests.support.audit_sample import record


async def main(url: str, ack_path: str, seconds: float) -> None:
    log = AuditLog(make_engine(url), max_batch=500)
    end = time.monotonic() + seconds
    with open(ack_path, "a", encoding="utf-8") as ack:
        while time.monotonic() < end:
            burst = [record() for _ in range(50)]
            indexes = await asyncio.gather(*(log.append(r) for r in burst))
            ack.write("".join(f"{i} {r.span_id}\n" for i, r in zip(indexes, burst, strict=True)))
            ack.flush()
    log.close()


def run(url: str, ack_path: str, seconds: float) -> None:
    """Process entry point for multiprocessing."""
    asyncio.run(main(url, ack_path, seconds))


if __name__ == "__main__":
    run(sys.argv[1], sys.argv[2], float(sys.argv[3]))
