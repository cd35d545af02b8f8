"""The dev federation's transcryptor chain: each transcryptor's config, allow-list and start.

Each transcryptor gets a ``transcryptor.toml`` and an ``allow.toml`` in its
own state directory (:meth:`~gateway.dev.keys.DevKeys.transcryptor_dir`),
beside its share, the ceremony's transcript and its audit log. ``make run``
starts them as processes (:func:`spawn`); the tests start them in their own
event loop (:func:`start_in_process`).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from gateway.dev.keys import DevKeys
from gateway.transcryptor.config import load_transcryptor_config
from gateway.transcryptor.server import TranscryptorServer, open_transcryptor

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
) -> Path:
    """Write ``transcryptor``'s config and allow-list; return the config's path."""
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
"""
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
