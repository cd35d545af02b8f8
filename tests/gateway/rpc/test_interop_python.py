"""Python grpcio calls the node over mTLS: health, a partner RPC, and reflection v1 and v1alpha."""

from __future__ import annotations

import grpc
from google.protobuf import descriptor_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2
from schakel.v1 import partner_pb2, partner_pb2_grpc

from gateway.rpc.server import Servicers
from tests.support.echo import EchoIdentityPartnerService
from tests.support.pki import RR, Federation, StartNode, channel_to


async def _reflect(
    channel: grpc.aio.Channel, service: str, request: reflection_pb2.ServerReflectionRequest
) -> reflection_pb2.ServerReflectionResponse:
    """One reflection exchange through ``service`` (the v1 and v1alpha wires are the same)."""
    method = channel.stream_stream(
        f"/{service}/ServerReflectionInfo",
        request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
        response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
    )
    call = method(iter([request]), timeout=5)
    replies = [reply async for reply in call]
    assert len(replies) == 1
    return replies[0]


async def test_grpcio_calls_health_and_a_partner_rpc(
    federation: Federation, start_node: StartNode
) -> None:
    node = await start_node(
        federation.config(federation.node(RR)), Servicers(partner=EchoIdentityPartnerService())
    )
    ggz = federation.partner(RR, "ggz-rr", "ggz")
    async with channel_to(node, ggz, federation.ca_file) as channel:
        health = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(), timeout=5
        )
        status = await partner_pb2_grpc.PartnerServiceStub(channel).GetCaseStatus(
            partner_pb2.GetCaseStatusRequest(), timeout=5
        )
    assert health.status == health_pb2.HealthCheckResponse.SERVING
    assert status.case_ref.case_id == f"schakel://partner/{RR}/ggz-rr"
    assert status.theme == "ggz"


async def test_reflection_is_served_as_v1_and_v1alpha(
    federation: Federation, start_node: StartNode
) -> None:
    node = await start_node(federation.config(federation.node(RR)))
    officer = federation.officer(RR, "fg")
    async with channel_to(node, officer, federation.ca_file) as channel:
        listed = {}
        for version in ("v1", "v1alpha"):
            reply = await _reflect(
                channel,
                f"grpc.reflection.{version}.ServerReflection",
                reflection_pb2.ServerReflectionRequest(list_services=""),
            )
            listed[version] = {s.name for s in reply.list_services_response.service}
        # A v1 client can look up the v1 service itself, as it looks up any other.
        reply = await _reflect(
            channel,
            "grpc.reflection.v1.ServerReflection",
            reflection_pb2.ServerReflectionRequest(
                file_containing_symbol="grpc.reflection.v1.ServerReflection"
            ),
        )
    assert listed["v1"] == listed["v1alpha"]
    assert {"schakel.v1.PartnerService", "grpc.reflection.v1.ServerReflection"} <= listed["v1"]
    (raw,) = reply.file_descriptor_response.file_descriptor_proto
    descriptor = descriptor_pb2.FileDescriptorProto.FromString(raw)
    assert descriptor.package == "grpc.reflection.v1"
    assert (
        descriptor.service[0].method[0].input_type == ".grpc.reflection.v1.ServerReflectionRequest"
    )
