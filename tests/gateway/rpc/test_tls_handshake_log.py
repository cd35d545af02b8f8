"""A refused TLS handshake is logged as one JSON line with the peer's address and the reason."""

from __future__ import annotations

import asyncio
import io
import json
import signal
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from certs.ca_store import node_dns_name
from gateway.rpc.core_log import CoreLogRouter
from gateway.tls import channel_credentials, node_channel
from tests.support.paths import ROOT
from tests.support.pki import RR, Credential, Federation, LogCapture
from tests.support.ports import free_port

# What grpc core writes for a client that offered TLS 1.2 only (handshaker tracer on).
REFUSED = [
    "I1129 22:35:25.206489   24547 ssl_transport_security.cc:2563] Handshake failed with error "
    "SSL_ERROR_SSL: error:100000b8:SSL routines:OPENSSL_internal:NO_SHARED_CIPHER: "
    "Invalid certificate verification context",
    "I1129 22:35:25.206523   24547 handshaker.cc:155] CallNextHandshakerLocked: error=UNKNOWN: "
    "Ssl handshake failed (TSI_PROTOCOL_FAILURE): SSL_ERROR_SSL: error:100000b8:SSL "
    "routines:OPENSSL_internal:NO_SHARED_CIPHER: Invalid certificate verification context: OK",
    "=== Source Location Trace: ===",
    "src/core/util/status_helper.cc:68",
    " shutdown=false index=2, args={endpoint=0x7fd0680176f0, args={grpc.internal."
    "endpoint_local_address=ipv4:127.0.0.1:46011, grpc.internal.endpoint_peer_address="
    "ipv4:127.0.0.1:56124, grpc.internal.server_credentials=0x557ae7965810}, "
    "read_buffer.Length()=0, exit_early=0}",
    "I1129 22:35:25.206537   24547 channel_trace.h:396] handshake manager 0x7fd068017a00: "
    "Failed with error: UNKNOWN: Ssl handshake failed",
]


def test_the_router_turns_grpc_core_lines_into_json(logs: LogCapture) -> None:
    passthrough = io.StringIO()
    router = CoreLogRouter(passthrough)
    for line in [
        *REFUSED,
        "E1129 22:35:26.000001   24547 chttp2_server.cc:100] something grpc says",
        "Traceback (most recent call last):",
    ]:
        router.feed(line)
    router.flush()
    (refused,) = logs.events("tls_handshake_refused")
    assert refused["peer"] == "ipv4:127.0.0.1:56124"
    assert refused["tls_error"] == "NO_SHARED_CIPHER"
    assert "TLS 1.3" in refused["reason"]
    assert refused["side"] == "server"
    (core,) = logs.events("grpc_core")
    assert (core["level"], core["source"]) == ("error", "chttp2_server.cc:100")
    assert passthrough.getvalue() == "Traceback (most recent call last):\n"


def _attempt(port: int, context: ssl.SSLContext) -> int:
    """Try a handshake from a fresh socket; its local port (the peer the node sees)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        local = int(raw.getsockname()[1])
        try:
            with context.wrap_socket(raw, server_hostname=node_dns_name(RR)) as tls:
                tls.recv(1)
        except (ssl.SSLError, OSError):
            pass
    return local


def _client(ca_file: Path, cred: Credential | None, version: ssl.TLSVersion) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(ca_file))
    if cred is not None:
        context.load_cert_chain(cred.cert_file, cred.key_file)
    context.maximum_version = version
    context.set_alpn_protocols(["h2"])
    return context


async def _wait_serving(port: int, creds: grpc.ChannelCredentials) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            async with node_channel(f"127.0.0.1:{port}", RR, creds) as channel:
                await health_pb2_grpc.HealthStub(channel).Check(
                    health_pb2.HealthCheckRequest(), timeout=1
                )
                return
        except grpc.aio.AioRpcError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)


async def test_schakel_node_run_logs_refused_handshakes_with_peer_and_reason(
    federation: Federation,
) -> None:
    port = free_port()
    path = federation.write_config(federation.node(RR))
    path.write_text(path.read_text().replace("127.0.0.1:0", f"127.0.0.1:{port}"))
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", "node", "run", "--config", str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        politie = federation.partner(RR, "politie-rr", "politie")
        creds = channel_credentials(federation.ca_file, politie.cert_file, politie.key_file)
        await _wait_serving(port, creds)
        old = _client(federation.ca_file, politie, ssl.TLSVersion.TLSv1_2)
        anonymous = _client(federation.ca_file, None, ssl.TLSVersion.TLSv1_3)
        tls12_port = await asyncio.to_thread(_attempt, port, old)
        no_cert_port = await asyncio.to_thread(_attempt, port, anonymous)
        await asyncio.sleep(1.0)  # the router writes a record once grpc is quiet
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    lines: list[dict[str, Any]] = []
    for text in err.splitlines():
        try:
            lines.append(json.loads(text))
        except ValueError:
            pytest.fail(f"a line on stderr is not JSON: {text[:200]}")
    refused = {e["peer"]: e for e in lines if e.get("event") == "tls_handshake_refused"}
    tls12 = refused[f"ipv4:127.0.0.1:{tls12_port}"]
    assert tls12["tls_error"] in {"NO_SHARED_CIPHER", "UNSUPPORTED_PROTOCOL"}
    assert "TLS 1.3" in tls12["reason"]
    no_cert = refused[f"ipv4:127.0.0.1:{no_cert_port}"]
    assert no_cert["reason"] == "the client sent no certificate"
    assert {e["side"] for e in refused.values()} == {"server"}
    assert any(e.get("event") == "node_stopped" for e in lines)


def test_without_the_tracer_a_refusal_is_still_logged_without_its_peer(logs: LogCapture) -> None:
    router = CoreLogRouter(io.StringIO(), traced=False)
    router.feed(REFUSED[0])
    router.flush()
    (refused,) = logs.events("tls_handshake_refused")
    assert (refused["peer"], refused["side"]) == ("unknown", "unknown")
    assert refused["tls_error"] == "NO_SHARED_CIPHER"
