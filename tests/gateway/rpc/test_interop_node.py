"""Node.js (@grpc/grpc-js) calls the node over mTLS: health and a partner RPC; TLS 1.2 is refused.

The set-up installs @grpc/grpc-js and @grpc/proto-loader with npm into
``tests/support/interop/node_modules`` (git-ignored) the first time; the tests skip
only when npm itself is not installed.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest

from certs.ca_store import node_dns_name
from gateway.rpc.server import Servicers
from tests.support.echo import EchoIdentityPartnerService
from tests.support.paths import ROOT
from tests.support.pki import RR, Credential, Federation, StartNode

INTEROP = ROOT / "tests" / "support" / "interop"


@pytest.fixture(scope="session")
def node_client() -> Path:
    """``client.js``, with its npm packages installed."""
    npm, node = shutil.which("npm"), shutil.which("node")
    if npm is None or node is None:
        pytest.skip("npm and node (Node.js) are not installed; the Node.js interop test needs them")
    lock_path = Path(tempfile.gettempdir()) / "schakel-interop-npm.lock"
    with lock_path.open("w") as lock:
        # Two test workers may get here at once; one installs, the other waits.
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (INTEROP / "node_modules" / "@grpc" / "grpc-js").is_dir():
            done = subprocess.run(
                [npm, "install", "--no-audit", "--no-fund", "--loglevel=error"],
                cwd=INTEROP,
                capture_output=True,
                text=True,
                timeout=600,
                check=False,
            )
            if done.returncode != 0:
                pytest.fail(f"npm install in {INTEROP} failed:\n{done.stderr[-3000:]}")
    return INTEROP / "client.js"


async def _node_js(
    client: Path,
    address: str,
    cred: Credential,
    ca_file: Path,
    calls: list[str],
    max_version: str = "TLSv1.3",
) -> dict[str, dict[str, Any]]:
    """Run the Node.js client; its result per call."""
    args = {
        "address": address,
        "servername": node_dns_name(RR),
        "ca": str(ca_file),
        "cert": str(cred.cert_file),
        "key": str(cred.key_file),
        "protoDir": str(ROOT / "proto"),
        "maxVersion": max_version,
        "calls": calls,
    }
    proc = await asyncio.create_subprocess_exec(
        "node",
        str(client),
        json.dumps(args),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    results = [json.loads(line) for line in out.decode().splitlines()]
    return {r["call"]: r for r in results}


async def test_grpc_js_calls_health_and_a_partner_rpc(
    node_client: Path, federation: Federation, start_node: StartNode
) -> None:
    node = await start_node(
        federation.config(federation.node(RR)), Servicers(partner=EchoIdentityPartnerService())
    )
    politie = federation.partner(RR, "politie-rr", "politie")
    results = await _node_js(
        node_client, node.address, politie, federation.ca_file, ["health", "caseStatus"]
    )
    assert results["health"] == {"call": "health", "ok": True, "reply": {"status": "SERVING"}}
    status = results["caseStatus"]
    assert status["ok"], status
    assert status["reply"]["case_ref"]["case_id"] == f"schakel://partner/{RR}/politie-rr"
    assert status["reply"]["theme"] == "politie"


async def test_grpc_js_offering_only_tls12_is_refused_in_the_handshake(
    node_client: Path, federation: Federation, start_node: StartNode
) -> None:
    node = await start_node(federation.config(federation.node(RR)))
    politie = federation.partner(RR, "politie-rr", "politie")
    results = await _node_js(
        node_client, node.address, politie, federation.ca_file, ["health"], "TLSv1.2"
    )
    assert results["health"]["ok"] is False
    assert results["health"]["code"] == "UNAVAILABLE"


# A node whose grpc was imported before the gateway package could set its cipher
# suites: TLS 1.2 gets through the handshake, and the interceptor must refuse it.
LATE_SUITES_NODE = """
import asyncio, sys
from pathlib import Path

import grpc  # before gateway: grpc starts with its default TLS 1.2 suites

from gateway import grpc_env
from gateway.config import load_config
from gateway.logging import configure_logging
from gateway.rpc.server import build_server

assert not grpc_env.applied_before_grpc
configure_logging("warning")

async def main() -> None:
    node = build_server(load_config(Path(sys.argv[1]), environ={}))
    await node.start()
    print(f"port {node.port}", flush=True)
    await node.wait()

asyncio.run(main())
"""


async def test_the_interceptor_refuses_tls12_that_got_through_the_handshake(
    node_client: Path, federation: Federation
) -> None:
    path = federation.write_config(federation.node(RR))
    env = {k: v for k, v in os.environ.items() if k != "GRPC_SSL_CIPHER_SUITES"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        LATE_SUITES_NODE,
        str(path),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
        cwd=ROOT,
    )
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
        assert line.startswith("port "), f"the node did not start: {line!r}"
        address = f"127.0.0.1:{int(line.split()[1])}"
        politie = federation.partner(RR, "politie-rr", "politie")
        old = await _node_js(
            node_client, address, politie, federation.ca_file, ["health"], "TLSv1.2"
        )
        new = await _node_js(node_client, address, politie, federation.ca_file, ["health"])
    finally:
        proc.terminate()
        await proc.wait()
    assert old["health"]["code"] == "UNAUTHENTICATED", old
    assert "the connection uses TLSv1.2" in old["health"]["details"]
    assert new["health"]["ok"] is True
