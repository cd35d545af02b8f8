"""Who gets in: real nodes on loopback, real mTLS, one test per rule of the interceptor.

A refusal during the TLS handshake (no client certificate, a foreign CA, an
expired certificate) never reaches gRPC on the server, so the client sees
the channel fail to connect: status UNAVAILABLE. Refusals after the
handshake come from the interceptor with UNAUTHENTICATED or
PERMISSION_DENIED and a message saying why.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from schakel.v1 import (
    case_pb2,
    case_pb2_grpc,
    common_pb2,
    federation_pb2,
    federation_pb2_grpc,
    partner_pb2,
    partner_pb2_grpc,
)

from certs.authority import Validity
from certs.ca_store import node_dns_name
from gateway.rpc.auth import current_identity
from gateway.rpc.server import NodeServer, Servicers
from gateway.rpc.stand_in import UnimplementedPartnerService
from gateway.tls import channel_credentials, node_channel
from gateway.tracing import current_trace
from tests.support.pki import HL, RR, Credential, Federation, LogCapture, StartNode, channel_to


class WhoAmIPartnerService(UnimplementedPartnerService):
    """Test-only: GetCaseStatus answers with the caller identity and span the server saw."""

    async def GetCaseStatus(
        self, request: partner_pb2.GetCaseStatusRequest, context: grpc.aio.ServicerContext
    ) -> partner_pb2.CaseStatus:
        identity = current_identity()
        trace = current_trace()
        assert trace is not None
        return partner_pb2.CaseStatus(
            case_ref=common_pb2.CaseRef(node_id=identity.node_id, case_id=identity.uri),
            theme=f"{identity.kind}|{identity.org_type}|{trace.trace_id}|{trace.span_id}",
        )


async def _status_of(coro: object) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await coro  # type: ignore[misc]
    return err.value.code(), err.value.details() or ""


async def _health(node: NodeServer, cred: Credential, ca_file: Path) -> int:
    async with channel_to(node, cred, ca_file) as channel:
        reply = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(), timeout=5
        )
        return int(reply.status)


async def test_a_partner_of_the_node_is_accepted_with_its_identity(
    federation: Federation, start_node: StartNode, logs: LogCapture
) -> None:
    node = await start_node(
        federation.config(federation.node(RR)), Servicers(partner=WhoAmIPartnerService())
    )
    politie = federation.partner(RR, "politie-rr", "politie")
    parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    async with channel_to(node, politie, federation.ca_file) as channel:
        call = partner_pb2_grpc.PartnerServiceStub(channel).GetCaseStatus(
            partner_pb2.GetCaseStatusRequest(), metadata=[("traceparent", parent)], timeout=5
        )
        reply = await call
        initial = dict(await call.initial_metadata())
    kind, org_type, trace_id, span_id = reply.theme.split("|")
    assert reply.case_ref.case_id == f"schakel://partner/{RR}/politie-rr"
    assert reply.case_ref.node_id == RR
    assert (kind, org_type) == ("partner", "politie")
    # The node continues the caller's trace in a span of its own and says which.
    assert trace_id == "0af7651916cd43dd8448eb211c80319c"
    assert span_id != "b7ad6b7169203331"
    assert initial["traceparent"] == f"00-{trace_id}-{span_id}-01"
    (line,) = [e for e in logs.events("rpc") if e["method"].endswith("GetCaseStatus")]
    assert line["peer"] == f"schakel://partner/{RR}/politie-rr"
    assert line["status"] == "OK"
    assert line["trace_id"] == trace_id
    assert line["span_id"] == span_id
    assert line["parent_span_id"] == "b7ad6b7169203331"


async def test_health_answers_any_federation_member(
    federation: Federation, start_node: StartNode
) -> None:
    node = await start_node(federation.config(federation.node(RR)))
    for cred in (
        federation.partner(RR, "ggz-rr", "ggz"),
        federation.node(HL),
        federation.collector(),
        federation.partner(HL, "politie-hl", "politie"),
    ):
        assert (
            await _health(node, cred, federation.ca_file) == health_pb2.HealthCheckResponse.SERVING
        )


async def test_no_client_certificate_is_refused_in_the_handshake(
    federation: Federation, start_node: StartNode
) -> None:
    node = await start_node(federation.config(federation.node(RR)))
    creds = grpc.ssl_channel_credentials(root_certificates=federation.ca_file.read_bytes())
    async with grpc.aio.secure_channel(
        node.address, creds, options=[("grpc.ssl_target_name_override", node_dns_name(RR))]
    ) as channel:
        code, _ = await _status_of(
            health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
        )
    assert code is grpc.StatusCode.UNAVAILABLE


async def test_a_certificate_from_another_ca_is_refused_in_the_handshake(
    federation: Federation, start_node: StartNode, tmp_path: Path
) -> None:
    node = await start_node(federation.config(federation.node(RR)))
    (tmp_path / "other").mkdir()
    other = Federation(tmp_path / "other", name="Namaak CA")
    impostor = other.partner(RR, "politie-rr", "politie")
    # The impostor trusts the real CA, so only the server can be the one refusing.
    code, _ = await _status_of(_health(node, impostor, federation.ca_file))
    assert code is grpc.StatusCode.UNAVAILABLE
    assert await _health(node, federation.partner(RR, "politie-rr", "politie"), federation.ca_file)


async def test_an_expired_certificate_is_refused_in_the_handshake(
    federation: Federation, start_node: StartNode
) -> None:
    node = await start_node(federation.config(federation.node(RR)))
    now = dt.datetime.now(dt.UTC)
    expired = federation.partner(
        RR,
        "politie-rr",
        "politie",
        validity=Validity(now - dt.timedelta(days=10), now - dt.timedelta(days=1)),
    )
    code, _ = await _status_of(_health(node, expired, federation.ca_file))
    assert code is grpc.StatusCode.UNAVAILABLE


async def test_revocation_takes_effect_on_a_running_server(
    federation: Federation, start_node: StartNode, logs: LogCapture
) -> None:
    node = await start_node(
        federation.config(federation.node(RR)), Servicers(partner=WhoAmIPartnerService())
    )
    politie = federation.partner(RR, "politie-rr", "politie")
    ggz = federation.partner(RR, "ggz-rr", "ggz")
    async with channel_to(node, politie, federation.ca_file) as channel:
        stub = partner_pb2_grpc.PartnerServiceStub(channel)
        await stub.GetCaseStatus(partner_pb2.GetCaseStatusRequest(), timeout=5)
        federation.revoke(politie)
        # Same connection, no restart: the next call is refused.
        code, details = await _status_of(
            stub.GetCaseStatus(partner_pb2.GetCaseStatusRequest(), timeout=5)
        )
    assert code is grpc.StatusCode.UNAUTHENTICATED
    assert "revoked" in details
    assert f"{politie.cert.serial_number:x}" in details
    # A new connection is refused too, and others are unaffected.
    code, _ = await _status_of(_health(node, politie, federation.ca_file))
    assert code is grpc.StatusCode.UNAUTHENTICATED
    assert await _health(node, ggz, federation.ca_file) == health_pb2.HealthCheckResponse.SERVING
    assert logs.events("crl_loaded")


async def test_a_crl_not_signed_by_the_ca_is_ignored(
    federation: Federation, start_node: StartNode, logs: LogCapture, tmp_path: Path
) -> None:
    node = await start_node(federation.config(federation.node(RR)))
    politie = federation.partner(RR, "politie-rr", "politie")
    federation.revoke(politie)
    assert (await _status_of(_health(node, politie, federation.ca_file)))[0] is (
        grpc.StatusCode.UNAUTHENTICATED
    )
    # A forger replaces the CRL with one that revokes nothing: the node keeps the good one.
    (tmp_path / "forger").mkdir()
    forger = Federation(tmp_path / "forger", name=federation.name)
    federation.crl_file.write_bytes(forger.crl_file.read_bytes())
    code, _ = await _status_of(_health(node, politie, federation.ca_file))
    assert code is grpc.StatusCode.UNAUTHENTICATED
    (failure,) = logs.events("crl_reload_failed")
    assert "not signed by the CA" in failure["reason"]
    assert failure["level"] == "error"


async def test_a_partner_may_not_call_the_federation_service(
    federation: Federation, start_node: StartNode
) -> None:
    node = await start_node(federation.config(federation.node(RR)))
    politie = federation.partner(RR, "politie-rr", "politie")
    async with channel_to(node, politie, federation.ca_file) as channel:
        code, details = await _status_of(
            federation_pb2_grpc.FederationServiceStub(channel).HitNoHit(
                federation_pb2.FederatedHitRequest(), timeout=5
            )
        )
    assert code is grpc.StatusCode.PERMISSION_DENIED
    assert "only federation nodes may call this; the caller is a partner" in details


async def test_a_partner_of_node_a_may_not_call_node_b(
    federation: Federation, start_node: StartNode
) -> None:
    hl = await start_node(federation.config(federation.node(HL)))
    politie_rr = federation.partner(RR, "politie-rr", "politie")
    async with channel_to(hl, politie_rr, federation.ca_file) as channel:
        code, details = await _status_of(
            partner_pb2_grpc.PartnerServiceStub(channel).GetCaseStatus(
                partner_pb2.GetCaseStatusRequest(), timeout=5
            )
        )
    assert code is grpc.StatusCode.PERMISSION_DENIED
    assert f"belongs to node {RR!r}, this is node {HL!r}" in details


async def test_a_collector_may_not_call_a_partner_rpc_but_may_ask_for_signals(
    federation: Federation, start_node: StartNode
) -> None:
    node = await start_node(federation.config(federation.node(RR)))
    collector = federation.collector()
    async with channel_to(node, collector, federation.ca_file) as channel:
        code, details = await _status_of(
            partner_pb2_grpc.PartnerServiceStub(channel).SubmitReferral(
                partner_pb2.SubmitReferralRequest(), timeout=5
            )
        )
        assert code is grpc.StatusCode.PERMISSION_DENIED
        assert "the caller is a collector" in details
        # Past the interceptor: the stand-in says what is missing and who delivers it.
        code, details = await _status_of(
            federation_pb2_grpc.FederationServiceStub(channel).GetSignals(
                federation_pb2.SignalsRequest(), timeout=5
            )
        )
    assert code is grpc.StatusCode.UNIMPLEMENTED
    assert "GetSignals is not served here" in details


async def test_nodes_may_not_ask_for_signals_and_officers_need_their_role(
    federation: Federation, start_node: StartNode
) -> None:
    node = await start_node(federation.config(federation.node(RR)))
    async with channel_to(node, federation.node(HL), federation.ca_file) as channel:
        stub = federation_pb2_grpc.FederationServiceStub(channel)
        code, _ = await _status_of(stub.GetSignals(federation_pb2.SignalsRequest(), timeout=5))
        assert code is grpc.StatusCode.PERMISSION_DENIED
        code, details = await _status_of(
            stub.HitNoHit(federation_pb2.FederatedHitRequest(), timeout=5)
        )
        assert code is grpc.StatusCode.UNIMPLEMENTED
        assert "HitNoHit is not served here" in details
    async with channel_to(node, federation.officer(RR, "fg"), federation.ca_file) as channel:
        code, details = await _status_of(
            case_pb2_grpc.CaseServiceStub(channel).Triage(case_pb2.TriageRequest(), timeout=5)
        )
    assert code is grpc.StatusCode.PERMISSION_DENIED
    assert "procesregisseur" in details
    async with channel_to(
        node, federation.officer(RR, "procesregisseur"), federation.ca_file
    ) as channel:
        code, _ = await _status_of(
            case_pb2_grpc.CaseServiceStub(channel).Triage(case_pb2.TriageRequest(), timeout=5)
        )
    assert code is grpc.StatusCode.UNIMPLEMENTED


class StreamingPartnerService(UnimplementedPartnerService):
    """Test-only: a task stream that names its caller, as an async generator."""

    async def ReceiveTasks(
        self, request: partner_pb2.ReceiveTasksRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[partner_pb2.PartnerTask]:
        for n in range(3):
            yield partner_pb2.PartnerTask(task_id=f"{current_identity().org_id}-{n}")


async def test_streaming_calls_pass_the_same_checks(
    federation: Federation, start_node: StartNode, logs: LogCapture
) -> None:
    node = await start_node(
        federation.config(federation.node(RR)), Servicers(partner=StreamingPartnerService())
    )
    async with channel_to(
        node, federation.partner(RR, "ggz-rr", "ggz"), federation.ca_file
    ) as channel:
        stream = partner_pb2_grpc.PartnerServiceStub(channel).ReceiveTasks(
            partner_pb2.ReceiveTasksRequest(), timeout=5
        )
        assert [task.task_id async for task in stream] == ["ggz-rr-0", "ggz-rr-1", "ggz-rr-2"]
    async with channel_to(node, federation.node(HL), federation.ca_file) as channel:
        stream = partner_pb2_grpc.PartnerServiceStub(channel).ReceiveTasks(
            partner_pb2.ReceiveTasksRequest(), timeout=5
        )
        with pytest.raises(grpc.aio.AioRpcError) as err:
            [task async for task in stream]
    assert err.value.code() is grpc.StatusCode.PERMISSION_DENIED
    statuses = [e["status"] for e in logs.events("rpc") if e["method"].endswith("ReceiveTasks")]
    assert statuses == ["OK", "PERMISSION_DENIED"]


class RelayPartnerService(UnimplementedPartnerService):
    """Test-only: asks a peer node for its health, as a node would in a federated call."""

    def __init__(self, peer: NodeServer, me: Credential, ca_file: Path) -> None:
        self.peer, self.me, self.ca_file = peer, me, ca_file

    async def GetCaseStatus(
        self, request: partner_pb2.GetCaseStatusRequest, context: grpc.aio.ServicerContext
    ) -> partner_pb2.CaseStatus:
        creds = channel_credentials(self.ca_file, self.me.cert_file, self.me.key_file)
        async with node_channel(self.peer.address, self.peer.config.node.id, creds) as channel:
            await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=5
            )
        trace = current_trace()
        assert trace is not None
        return partner_pb2.CaseStatus(theme=trace.span_id)


async def test_a_node_to_node_call_continues_the_trace(
    federation: Federation, start_node: StartNode, logs: LogCapture
) -> None:
    hl = await start_node(federation.config(federation.node(HL)))
    rr_cred = federation.node(RR)
    rr = await start_node(
        federation.config(rr_cred),
        Servicers(partner=RelayPartnerService(hl, rr_cred, federation.ca_file)),
    )
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    async with channel_to(
        rr, federation.partner(RR, "politie-rr", "politie"), federation.ca_file
    ) as channel:
        reply = await partner_pb2_grpc.PartnerServiceStub(channel).GetCaseStatus(
            partner_pb2.GetCaseStatusRequest(),
            metadata=[("traceparent", f"00-{trace_id}-00f067aa0ba902b7-01")],
            timeout=5,
        )
    (at_hl,) = [e for e in logs.events("rpc") if e["peer"] == f"schakel://node/{RR}"]
    assert at_hl["method"] == "/grpc.health.v1.Health/Check"
    assert at_hl["trace_id"] == trace_id
    assert at_hl["parent_span_id"] == reply.theme
