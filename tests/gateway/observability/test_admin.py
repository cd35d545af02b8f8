"""The admin port: liveness, readiness with its reasons, and the Prometheus page, over HTTP."""

from __future__ import annotations

import asyncio
import socket
import urllib.error

import pytest
from prometheus_client import CollectorRegistry, Counter

from gateway.app import open_node
from gateway.config import ConfigError
from gateway.observability.admin import AdminServer
from gateway.rpc.server import StartupError
from tests.support.pki import RR, Federation
from tests.support.scrape import get, samples


def test_probes_and_metrics_answer_and_name_the_failing_check() -> None:
    registry = CollectorRegistry()
    Counter("demo_things", "Things.", registry=registry).inc(3)
    broken: list[str] = []

    def flaky() -> str | None:
        if broken:
            raise RuntimeError("pretend the check itself crashed")
        return None

    server = AdminServer("127.0.0.1:0", registry, {"database": lambda: None, "thing": flaky})
    server.start()
    port = server.port
    try:
        assert get(port, "/healthz") == (200, "ok\n")
        assert get(port, "/readyz") == (200, "ok database\nok thing\n")
        broken.append("yes")
        status, body = get(port, "/readyz")
        assert status == 503
        assert body == "ok database\nfail thing: check failed: RuntimeError\n"
        assert samples(port)["demo_things"][0].value == 3
        assert get(port, "/nothing")[0] == 404
    finally:
        server.stop()
    with pytest.raises(urllib.error.URLError):
        get(port, "/healthz")


async def test_a_node_without_policy_is_alive_but_not_ready(federation: Federation) -> None:
    config = federation.config(federation.node(RR), extra='\n[admin]\nlisten = "127.0.0.1:0"\n')
    node = open_node(config)
    assert node.admin is not None
    await node.start()
    try:
        port = node.admin.port
        assert await asyncio.to_thread(get, port, "/healthz") == (200, "ok\n")
        status, body = await asyncio.to_thread(get, port, "/readyz")
        assert status == 503
        assert body.splitlines() == [
            "ok database",
            "fail policy: no [policy] bundle is configured, so every request is denied",
            "ok serving",
        ]
        node.admin.serving.clear()  # what stop() does first
        body = (await asyncio.to_thread(get, port, "/readyz"))[1]
        assert "fail serving: the gRPC server is not serving (starting or stopping)" in body
    finally:
        await node.stop(grace=None)


async def test_a_taken_admin_port_is_a_start_up_error_naming_the_key(
    federation: Federation,
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        node = open_node(
            federation.config(
                federation.node(RR), extra=f'\n[admin]\nlisten = "127.0.0.1:{port}"\n'
            )
        )
        try:
            with pytest.raises(
                StartupError, match=rf"admin\.listen: cannot listen on 127\.0\.0\.1:{port}"
            ):
                await node.start()
        finally:
            await node.stop(grace=None)


def test_admin_and_tracing_values_are_checked_at_load(federation: Federation) -> None:
    node = federation.node(RR)
    with pytest.raises(ConfigError, match=r"admin\.listen: 'localhost' is not host:port"):
        federation.config(node, extra='\n[admin]\nlisten = "localhost"\n')
    with pytest.raises(ConfigError, match=r"tracing\.otlp_endpoint: 'otel:4317' is not an http"):
        federation.config(node, extra='\n[tracing]\notlp_endpoint = "otel:4317"\n')
    assert federation.config(node).admin.listen == ""  # off unless configured
