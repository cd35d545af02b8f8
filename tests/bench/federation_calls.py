"""What the federation benchmarks share: the bare health server of their baseline and one
hit/no-hit fan-out as a benchmark call."""

from __future__ import annotations

from collections.abc import Callable

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio  # type: ignore[attr-defined]
from schakel.v1 import common_pb2

from gateway.federation import PeerClient
from gateway.tls import ServerCertificates
from tests.bench.harness import Call
from tests.support.cluster import PURPOSE
from tests.support.pki import Federation


async def bare_health_server(fed: Federation, node_id: str) -> tuple[grpc.aio.Server, int]:
    """A grpc health server with ``node_id``'s certificate and no interceptor; its port."""
    cred = fed.node(node_id, force=True)
    server = grpc.aio.server()
    servicer = health_aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    tls = ServerCertificates(fed.ca_file, cred.cert_file, cred.key_file)
    port = server.add_secure_port("127.0.0.1:0", tls.credentials())
    await server.start()
    await servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    return server, port


def hit_no_hit_call(
    client: PeerClient,
    subject_for: Callable[[str], common_pb2.EncryptedPseudonym],
    only: list[str],
    *,
    case: common_pb2.CaseRef,
    hit_from: str,
) -> Call:
    """One hit/no-hit to the peers in ``only``, which must all answer, ``hit_from`` a hit."""

    async def call() -> object:
        result = await client.hit_no_hit(
            purpose=PURPOSE,
            case_ref=case,
            phase=common_pb2.PHASE_AANMELDING,
            subject_for=subject_for,
            deadline=60.0,
            only=only,
        )
        if result.unanswered or not result.answers[hit_from].hit:
            raise RuntimeError(f"fan-out incomplete: {result.unanswered}")
        return result

    return call
