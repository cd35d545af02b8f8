"""A node as a real process (``schakel node run``), and partner load against it.

The crash and soak tests need a node they can kill with SIGKILL and whose
memory they can read, so it runs in its own process on a config made with
the test federation's PKI and the dev keys. :func:`referral_load` is the
steady partner load: referrals with fresh idempotency keys and subjects.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from schakel.v1 import common_pb2, partner_pb2, partner_pb2_grpc

from adapters.sdk import encrypt_subject
from gateway.dev.fakedata import fake_bsns
from gateway.dev.keys import DevKeys
from gateway.tls import channel_credentials, node_channel
from tests.support.paths import ROOT
from tests.support.pki import Credential, Federation
from tests.support.ports import free_port

RUNNER = (
    "import argparse, sys; from gateway import node_cli; "
    "p = argparse.ArgumentParser(); node_cli.register(p.add_subparsers()); "
    "a = p.parse_args(sys.argv[1:]); sys.exit(a.func(a))"
)
ACTIVITY = "zvh.complexe-casuistiek"
REFERRER = ("politie-rr", "politie")


@dataclass
class NodeProcess:
    """``schakel node run`` for one node, started, killed and started again on one config."""

    node_id: str
    config: Path
    address: str
    log: Path
    proc: subprocess.Popen[bytes] | None = None
    _log_file: IO[bytes] | None = field(default=None, repr=False)

    def start(self) -> None:
        """Start the process; its log lines go to :attr:`log` (appended across restarts)."""
        self._log_file = self.log.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-c", RUNNER, "node", "run", "--config", str(self.config)],
            stdout=subprocess.DEVNULL,
            stderr=self._log_file,
            cwd=ROOT,
        )

    async def serving(self, cred: Credential, ca_file: Path, timeout: float = 60.0) -> None:
        """Wait until the node answers its health check over mTLS."""
        creds = channel_credentials(ca_file, cred.cert_file, cred.key_file)
        deadline = time.monotonic() + timeout
        while True:
            assert self.proc is not None and self.proc.poll() is None, self.log.read_text()[-2000:]
            try:
                async with node_channel(self.address, self.node_id, creds) as channel:
                    reply = await health_pb2_grpc.HealthStub(channel).Check(
                        health_pb2.HealthCheckRequest(), timeout=1
                    )
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.aio.AioRpcError:
                if time.monotonic() > deadline:
                    raise
            await asyncio.sleep(0.1)

    def kill(self) -> None:
        """SIGKILL: no shutdown of any kind."""
        self._end(signal.SIGKILL)

    def stop(self) -> int:
        """SIGTERM and wait; the exit code."""
        return self._end(signal.SIGTERM)

    def _end(self, how: signal.Signals) -> int:
        assert self.proc is not None
        self.proc.send_signal(how)
        code = self.proc.wait(timeout=60)
        if self._log_file is not None:
            self._log_file.close()
        return code

    def rss_kib(self) -> int:
        """The process's resident memory, KiB."""
        assert self.proc is not None
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        line = next(x for x in status.splitlines() if x.startswith("VmRSS:"))
        return int(line.split()[1])


def node_process(
    root: Path,
    fed: Federation,
    node_id: str,
    db_url: str,
    extra: str = "",
    transcryptors: Sequence[tuple[str, str]] = (),
) -> NodeProcess:
    """A node process for ``node_id`` on ``db_url``, with keys, policy and its referrer,
    converting subjects through the running chain ``transcryptors`` (id, address)."""
    keys = DevKeys(root / "keys")
    port = free_port()
    sections = keys.node_sections(node_id, checkpoint_every_seconds=1, transcryptors=transcryptors)
    sections += f'\n[database]\nurl = "{db_url}"\n'
    sections += f'\n[[partners]]\nid = "{REFERRER[0]}"\norg_type = "{REFERRER[1]}"\n'
    path = fed.write_config(fed.node(node_id), extra=sections + extra)
    path.write_text(path.read_text().replace("127.0.0.1:0", f"127.0.0.1:{port}"))
    return NodeProcess(node_id, path, f"127.0.0.1:{port}", root / f"{node_id}.log")


def y_of(root: Path) -> bytes:
    """The federation's public key Y of the dev keys under ``root``."""
    return DevKeys(root / "keys").global_public_key()


def log_vkey(root: Path, node_id: str) -> str:
    """The node's checkpoint vkey, as an officer pins it."""
    return DevKeys(root / "keys").log_vkey(node_id)


def referral(y: bytes, key: str, bsn: str) -> partner_pb2.SubmitReferralRequest:
    """A valid referral about ``bsn`` under idempotency key ``key``."""
    return partner_pb2.SubmitReferralRequest(
        idempotency_key=key,
        purpose=common_pb2.Purpose(processing_activity_id=ACTIVITY),
        subject=encrypt_subject("bsn", bsn, y),
        theme="complexe-casuistiek",
        criteria=["meervoudige-problematiek"],
        reason_codes=["escalatie"],
        external_ref=key[:32],
    )


async def referral_load(
    node: NodeProcess,
    fed: Federation,
    y: bytes,
    stop: asyncio.Event,
    *,
    workers: int,
    acked: dict[str, str],
    interval: float = 0.0,
    latencies: list[tuple[float, float]] | None = None,
    on_error: Callable[[grpc.StatusCode], None] = lambda _code: None,
    prefix: str = "w",
) -> None:
    """Referrals from ``workers`` concurrent loops until ``stop``, each loop one per
    ``interval`` seconds at most; each OK answer goes into ``acked`` (idempotency key ->
    case id) and, with ``latencies``, (time, seconds). Loads side by side need their own
    ``prefix`` for their idempotency keys."""
    cred = fed.partner(node.node_id, *REFERRER, force=True)
    creds = channel_credentials(fed.ca_file, cred.cert_file, cred.key_file)
    bsns = fake_bsns(20_000, seed=14)

    async def loop(n: int, stub: partner_pb2_grpc.PartnerServiceStub) -> None:
        i = 0
        due = time.monotonic()
        while not stop.is_set():
            due += interval
            await asyncio.sleep(max(due - time.monotonic(), 0))
            key = f"{prefix}{n}-{i}"
            started = time.monotonic()
            try:
                answer = await stub.SubmitReferral(
                    referral(y, key, bsns[(n * 7919 + i) % len(bsns)]), timeout=5
                )
            except grpc.aio.AioRpcError as exc:
                on_error(exc.code())
                await asyncio.sleep(0.05)
            else:
                acked[key] = answer.case_ref.case_id
                if latencies is not None:
                    latencies.append((started, time.monotonic() - started))
            i += 1

    async with node_channel(node.address, node.node_id, creds) as channel:
        stub = partner_pb2_grpc.PartnerServiceStub(channel)
        jobs = [asyncio.create_task(loop(n, stub)) for n in range(workers)]
        try:
            await asyncio.gather(*jobs)
        finally:
            for job in jobs:
                job.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.gather(*jobs, return_exceptions=True)
