"""Peer nodes as processes of their own, for fan-out rows that measure the node, not one CPU.

Each peer is ``schakel node run`` (the real node: policy, pseudonyms,
directory check, durable audit) on its own SQLite file, logging warnings
only, so thirty of them stay light on a small machine. They share the
asking cluster's CA, keys, transcryptor chain and directory key; their own
signed directory lists them and the asking node, so each admits the asker's
calls as it would in a federation. The first peer holds an active case for
the benchmark's subject, referred through its PartnerService (and so
through the chain), as a partner would.
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from schakel.v1 import common_pb2, partner_pb2, partner_pb2_grpc

from adapters.sdk import encrypt_subject
from gateway.federation import Peer
from gateway.tls import channel_credentials, node_channel
from policy import signing
from tests.support.cluster import BSN, PURPOSE, Cluster, write_directory
from tests.support.pki import Credential
from tests.support.ports import free_port
from tests.support.process import NodeProcess

REFERRER = ("politie-p", "politie")


@dataclass
class PeerProcesses:
    """Running peer node processes, in order; the first holds the subject's case."""

    processes: list[NodeProcess] = field(default_factory=list)
    seconds_to_start: float = 0.0

    @property
    def peers(self) -> list[Peer]:
        """The peers as a :class:`~gateway.federation.PeerClient` dials them."""
        return [Peer(p.node_id, p.address) for p in self.processes]

    def rss_mib(self) -> float:
        """Resident memory of all peer processes together, MiB."""
        return sum(p.rss_kib() for p in self.processes) / 1024

    def cpu_seconds(self) -> float:
        """User plus system CPU time all peer processes used so far, seconds."""
        ticks = 0
        for process in self.processes:
            assert process.proc is not None
            stat = Path(f"/proc/{process.proc.pid}/stat").read_text()
            fields = stat.rpartition(")")[2].split()
            ticks += int(fields[11]) + int(fields[12])  # utime, stime
        return ticks / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        """SIGTERM every peer and wait for it."""
        for process in self.processes:
            if process.proc is not None and process.proc.poll() is None:
                process.stop()


def _config(cluster: Cluster, db_dir: Path, node_id: str, directory: Path, listen: str) -> Path:
    assert cluster.chain is not None
    extra = cluster.keys.node_sections(node_id, transcryptors=cluster.chain.endpoints)
    extra += f"""
[database]
url = "sqlite:///{db_dir / f"{node_id}.db"}"

[federation]
directory = "{directory}"
public_key = "{signing.public_key_path(cluster.directory_key)}"
reload_seconds = 60

[[partners]]
id = "{REFERRER[0]}"
org_type = "{REFERRER[1]}"
"""
    path = cluster.fed.write_config(cluster.fed.node(node_id), extra=extra)
    text = path.read_text().replace("127.0.0.1:0", listen)
    # Warnings only: one log line per call would cost each peer more than the call.
    path.write_text(text.replace("[node]\n", '[node]\nlog_level = "warning"\n', 1))
    return path


async def start_peer_processes(
    cluster: Cluster, root: Path, asker: str, node_ids: list[str], db_dir: Path | None = None
) -> PeerProcesses:
    """Start a node process per id in ``node_ids``; refer the subject to the first.

    Their databases go into ``db_dir`` (default ``root``).
    """
    root.mkdir(parents=True, exist_ok=True)
    listen = {n: f"127.0.0.1:{free_port()}" for n in node_ids}
    directory = root / "directory.yaml"
    listed = [(asker, cluster.addresses[asker]), *listen.items()]
    write_directory(directory, cluster.directory_key, listed)
    started = time.perf_counter()
    running = PeerProcesses()
    try:
        for node_id in node_ids:
            path = _config(cluster, db_dir or root, node_id, directory, listen[node_id])
            process = NodeProcess(node_id, path, listen[node_id], root / f"{node_id}.log")
            process.start()
            running.processes.append(process)
        asker_cred = cluster.fed.node(asker, force=True)
        await asyncio.gather(
            *(_serving(p, asker_cred, cluster.fed.ca_file) for p in running.processes)
        )
        running.seconds_to_start = time.perf_counter() - started
        await _refer(cluster, running.processes[0])
    except BaseException:
        running.stop()
        raise
    return running


async def _serving(process: NodeProcess, cred: Credential, ca_file: Path) -> None:
    """Wait until ``process`` serves; start it again on another port if its port was taken.

    Test port blocks can lie inside the kernel's ephemeral range, so an
    outgoing connection may take a port between picking it and the node
    binding it. The directory keeps the first address; only the asker's
    entry in it matters to the peers.
    """
    for _attempt in range(3):
        try:
            await process.serving(cred, ca_file, 180)
            return
        except AssertionError as exc:
            if "cannot listen" not in str(exc):
                raise
        process.stop()
        address = f"127.0.0.1:{free_port()}"
        process.config.write_text(process.config.read_text().replace(process.address, address))
        process.address = address
        process.start()
    raise RuntimeError(f"{process.node_id}: no free port to listen on in 3 attempts")


async def _refer(cluster: Cluster, peer: NodeProcess) -> None:
    cred = cluster.fed.partner(peer.node_id, *REFERRER, force=True)
    creds = channel_credentials(cluster.fed.ca_file, cred.cert_file, cred.key_file)
    async with node_channel(peer.address, peer.node_id, creds) as channel:
        stub = partner_pb2_grpc.PartnerServiceStub(channel)
        await stub.SubmitReferral(
            partner_pb2.SubmitReferralRequest(
                idempotency_key="bench",
                purpose=common_pb2.Purpose(processing_activity_id=PURPOSE),
                subject=encrypt_subject("bsn", BSN, cluster.keys.global_public_key()),
                theme="complexe-casuistiek",
                criteria=["meervoudige-problematiek"],
                reason_codes=["escalatie"],
                external_ref="BENCH-1",
            ),
            timeout=30,
            wait_for_ready=True,
        )
