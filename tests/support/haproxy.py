"""HAProxy in TCP mode in front of a node's replicas, as an operator would run it.

TLS passes through untouched (mTLS ends at the replica, which must see the
client certificate). The set-up installs HAProxy (Debian package
``haproxy``) with apt-get when it is missing and the tests run as root; a
test skips, saying why, only when that is not possible.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tests.support.ports import free_port


def install() -> str:
    """Make sure haproxy is there; why it cannot be, or "" when it is."""
    if shutil.which("haproxy"):
        return ""
    apt = shutil.which("apt-get")
    if apt is None:
        return "no haproxy and no apt-get to install it with"
    if os.geteuid() != 0:
        return "apt-get install haproxy needs root"
    done = subprocess.run([apt, "install", "-y", "haproxy"], capture_output=True, check=False)
    if done.returncode != 0:
        subprocess.run([apt, "update"], capture_output=True, check=False)
        done = subprocess.run([apt, "install", "-y", "haproxy"], capture_output=True, check=False)
    if done.returncode != 0 or not shutil.which("haproxy"):
        return f"apt-get install haproxy failed: {done.stderr[-300:]!r}"
    return ""


def config(listen: str, servers: Sequence[str]) -> str:
    """An HAProxy configuration: TCP mode, round robin, a health check every 500 ms."""
    backends = "\n".join(
        f"    server replica{n} {address} check inter 500ms fall 2 rise 2"
        for n, address in enumerate(servers)
    )
    return f"""global
    maxconn 4000

defaults
    mode tcp
    timeout connect 2s
    timeout client 1h
    timeout server 1h

frontend schakel
    bind {listen}
    default_backend replicas

backend replicas
    balance roundrobin
    option redispatch
    retries 2
{backends}
"""


@dataclass
class HAProxy:
    """A running haproxy process in the foreground."""

    address: str
    proc: subprocess.Popen[bytes]

    def stop(self) -> None:
        """Stop it and wait."""
        self.proc.terminate()
        self.proc.wait(timeout=10)


def start(root: Path, servers: Sequence[str]) -> HAProxy:
    """Start haproxy on a free loopback port in front of ``servers``."""
    address = f"127.0.0.1:{free_port()}"
    path = root / "haproxy.cfg"
    path.write_text(config(address, servers))
    check = subprocess.run(["haproxy", "-c", "-f", str(path)], capture_output=True, check=False)
    assert check.returncode == 0, check.stderr
    log = (root / "haproxy.log").open("ab")
    proc = subprocess.Popen(["haproxy", "-db", "-f", str(path)], stdout=log, stderr=log)
    return HAProxy(address, proc)
