"""The dev federation's transcryptor chain: each transcryptor's config, allow-list and start.

Each transcryptor gets a ``transcryptor.toml`` and an ``allow.toml`` in its
own state directory (:meth:`~gateway.dev.keys.DevKeys.transcryptor_dir`),
beside its share, the ceremony's transcript and its audit log. ``make run``
starts them as processes (:func:`start_processes`); the tests start them in
their own event loop (:func:`start_in_process`). :func:`refused_by_one` is
the walkthrough's step where one transcryptor refuses what its own policy
does not allow.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

from adapters.sdk import encrypt_subject
from gateway.audit import tables
from gateway.dev.federation import DEMO_BSN, PARTNERS, PURPOSE, ROTTERDAM, DevFederation
from gateway.dev.keys import DevKeys
from gateway.errors import DeniedError
from gateway.transcryptor.config import load_transcryptor_config
from gateway.transcryptor.server import TranscryptorServer, open_transcryptor
from policy.pseudonyms import Ciphertext

ANY_DOMAIN = ("*",)


def allow_list(targets: Sequence[str] = ANY_DOMAIN) -> str:
    """An allow-list: every node converts from Y or its own domain to ``targets``."""
    quoted = ", ".join(f'"{t}"' for t in targets)
    return f"""# Who may have which subjects converted, at this transcryptor.
[enrol]
callers = ["schakel://node/*", "schakel://partner/*/*"]

[[allow]]
id = "nodes-from-y-or-own-domain"
callers = ["schakel://node/*"]
from = ["Y", "@caller"]
to = [{quoted}]
activities = ["*"]
"""


@dataclass(frozen=True)
class TlsFiles:
    """The CA, a transcryptor's certificate and key, and the CRL."""

    ca_file: Path
    cert_file: Path
    key_file: Path
    crl_file: Path | None = None


def write_config(
    keys: DevKeys,
    transcryptor: str,
    tls: TlsFiles,
    *,
    listen: str = "127.0.0.1:0",
    allow: str | None = None,
    subjects_per_second: int = 50_000,
    burst: int = 500_000,
    workers: int = 2,
    witnesses: Sequence[tuple[str, str]] = (),
) -> Path:
    """Write ``transcryptor``'s config and allow-list; return the config's path.

    ``witnesses`` are (node id, address) of the nodes asked to cosign its log,
    all needed for a final checkpoint.
    """
    keys.chain()  # makes the share and the transcript in the state directory
    state = keys.transcryptor_dir(transcryptor).resolve()
    (state / "allow.toml").write_text(allow if allow is not None else allow_list())
    crl = f'crl_file = "{tls.crl_file}"\n' if tls.crl_file is not None else ""
    path = state / "transcryptor.toml"
    path.write_text(
        f"""[transcryptor]
id = "{transcryptor}"
listen = "{listen}"
state_dir = "{state}"
workers = {workers}

[tls]
ca_file = "{tls.ca_file}"
cert_file = "{tls.cert_file}"
key_file = "{tls.key_file}"
{crl}
[policy]
file = "{state / "allow.toml"}"

[rate]
subjects_per_second = {subjects_per_second}
burst = {burst}

[audit]
checkpoint_every_seconds = 5
quorum = {len(witnesses)}
"""
        + "".join(
            f"""
[[witnesses]]
id = "{node}"
address = "{address}"
witness_key = "{keys.witness_vkey(node)}"
"""
            for node, address in witnesses
        )
    )
    return path


async def start_in_process(configs: Sequence[Path]) -> list[TranscryptorServer]:
    """Start a transcryptor per config in this event loop, in order."""
    servers: list[TranscryptorServer] = []
    try:
        for path in configs:
            server = open_transcryptor(load_transcryptor_config(path, environ={}))
            await server.start()
            servers.append(server)
    except BaseException:
        await stop_in_process(servers)
        raise
    return servers


async def stop_in_process(servers: Sequence[TranscryptorServer]) -> None:
    """Stop every transcryptor started by :func:`start_in_process`."""
    await asyncio.gather(*(s.stop(grace=None) for s in servers))


def spawn(config: Path, log: Path) -> subprocess.Popen[bytes]:
    """``schakel transcryptor run`` for ``config`` as a process of its own."""
    root = Path(__file__).resolve().parents[2]
    paths = [str(root), str(root / "proto"), os.environ.get("PYTHONPATH", "")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p)}
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "gateway.cli", "transcryptor", "run", "--config", str(config)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )


def dev_domains() -> list[str]:
    """Every domain of the dev federation: its nodes and their partners."""
    return [d for node, orgs in PARTNERS.items() for d in (node, *(o for o, _ in orgs))]


async def start_processes(fed: DevFederation, ports: dict[str, int], log: Path) -> None:
    """Start the dev chain as processes: tc-regio converts to any domain, tc-landelijk only
    to the domains of the dev federation, so each decides by its own policy. Both nodes
    witness each transcryptor's log."""
    policies = {"tc-regio": allow_list(), "tc-landelijk": allow_list(dev_domains())}
    for transcryptor in fed.keys.transcryptors:
        cred = fed.credentials[f"transcryptor-{transcryptor}"]
        crl = fed.root / "ca" / "crl.pem"
        config = write_config(
            fed.keys,
            transcryptor,
            TlsFiles(
                fed.ca_file.resolve(),
                cred.cert_file.resolve(),
                cred.key_file.resolve(),
                crl.resolve(),
            ),
            listen=f"127.0.0.1:{ports[transcryptor]}",
            allow=policies.get(transcryptor),
            witnesses=[(node, f"127.0.0.1:{ports[node]}") for node in PARTNERS],
        )
        fed.processes.append(spawn(config, log))
        fed.transcryptors[transcryptor] = f"127.0.0.1:{ports[transcryptor]}"
    for (transcryptor, address), process in zip(
        fed.transcryptors.items(), fed.processes, strict=True
    ):
        await wait_listening(transcryptor, address, process)


async def wait_listening(transcryptor: str, address: str, process: subprocess.Popen[bytes]) -> None:
    """Return when ``process`` accepts connections at ``address``; RuntimeError if it exits."""
    host, port = address.rsplit(":", 1)
    for _ in range(300):
        if process.poll() is not None:
            raise RuntimeError(f"transcryptor {transcryptor} exited ({process.returncode})")
        try:
            _, writer = await asyncio.open_connection(host, int(port))
        except OSError:
            await asyncio.sleep(0.1)
            continue
        writer.close()
        return
    raise RuntimeError(f"transcryptor {transcryptor} did not listen on {address}")


async def refused_by_one(fed: DevFederation) -> str:
    """Rotterdam asks the chain for a domain outside tc-landelijk's allow-list."""
    subjects = fed.nodes[ROTTERDAM].parts.subjects
    assert subjects is not None
    sent = Ciphertext.from_proto(encrypt_subject("bsn", DEMO_BSN, fed.keys.global_public_key()))
    try:
        await subjects.for_domain([sent], "woningcorporatie-x", PURPOSE.processing_activity_id)
    except DeniedError as exc:
        assert exc.message.startswith("transcryptor tc-landelijk refused"), exc.message
        return f"PERMISSION_DENIED after tc-regio converted: {exc.message}"
    raise AssertionError("the chain converted to a domain outside tc-landelijk's policy")


async def logged(fed: DevFederation) -> str:
    """How many calls each transcryptor's own audit log holds."""
    counts = []
    for transcryptor in fed.transcryptors:
        url = f"sqlite:///{fed.keys.transcryptor_dir(transcryptor) / 'transcryptor.db'}"
        engine = sa.create_engine(url)
        try:
            with engine.connect() as conn:
                size = conn.execute(
                    sa.select(sa.func.count()).select_from(tables.leaf)
                ).scalar_one()
        finally:
            engine.dispose()
        counts.append(f"{transcryptor} {size}")
    return "calls in each transcryptor's own audit log: " + ", ".join(counts)
