"""The node's gRPC server: mTLS 1.3, the interceptor, the services, health and reflection.

:func:`build_server` assembles a :class:`NodeServer` from a validated
:class:`~gateway.config.NodeConfig`; the servicers are passed in, so each
issue replaces the UNIMPLEMENTED stand-in it delivers.

Before it listens, the node checks its own certificate: it must be the
certificate of ``node.id``, chain to ``tls.ca_file``, be valid now and match
``tls.key_file``; otherwise :class:`~gateway.config.ConfigError` names the
key. Connections are closed after ``tls.max_connection_age_seconds`` (plus a
grace period for calls in flight), and streams end at the same age, so every
client handshakes and is checked again. Reflection is served as
``grpc.reflection.v1`` and, for older tools, ``grpc.reflection.v1alpha``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

# The stubs know only the sync servicer; the aio one lives at health.aio.
from grpc_health.v1.health import aio as health_aio  # type: ignore[attr-defined]
from grpc_reflection.v1alpha import reflection, reflection_pb2, reflection_pb2_grpc

# reflection.aio is this module; the stubs know only the sync servicer.
from grpc_reflection.v1alpha._async import ReflectionServicer as AsyncReflectionServicer
from schakel.v1 import audit_pb2_grpc, case_pb2_grpc, federation_pb2_grpc, partner_pb2_grpc
from sqlalchemy import Engine

from gateway.audit.store import AuditLog
from gateway.config import ConfigError, NodeConfig, config_error
from gateway.logging import get_logger
from gateway.rpc.auth import (
    AUDIT_SERVICE,
    CASE_SERVICE,
    FEDERATION_SERVICE,
    PARTNER_SERVICE,
    AuthInterceptor,
)
from gateway.rpc.stand_in import (
    UnimplementedAuditService,
    UnimplementedCaseService,
    UnimplementedFederationService,
    UnimplementedPartnerService,
)
from gateway.storage import make_engine, migrate
from gateway.tls import RevocationList, ServerCertificates, TlsFileError

log = get_logger("server")

SERVICE_NAMES = (PARTNER_SERVICE, CASE_SERVICE, FEDERATION_SERVICE, AUDIT_SERVICE)
REFLECTION_V1 = "grpc.reflection.v1.ServerReflection"
CONNECTION_AGE_GRACE_SECONDS = 60
"""How long calls in flight may finish on a connection that reached its maximum age."""
CRL_NUMBER_FILE = "crl-number"
"""In the state directory: the highest CRL number taken, so no older CRL returns."""


@dataclass
class Servicers:
    """The implementations a node serves; defaults answer UNIMPLEMENTED."""

    partner: partner_pb2_grpc.PartnerServiceServicer = field(
        default_factory=UnimplementedPartnerService
    )
    case: case_pb2_grpc.CaseServiceServicer = field(default_factory=UnimplementedCaseService)
    federation: federation_pb2_grpc.FederationServiceServicer = field(
        default_factory=UnimplementedFederationService
    )
    audit: audit_pb2_grpc.AuditServiceServicer = field(default_factory=UnimplementedAuditService)


class StartupError(Exception):
    """The node cannot start for a reason outside the config file's syntax."""


class NodeServer:
    """A built node server; :meth:`start` it, then :meth:`wait` or :meth:`stop`."""

    def __init__(
        self,
        *,
        config: NodeConfig,
        server: grpc.aio.Server,
        port: int,
        certificates: ServerCertificates,
        revocations: RevocationList,
        health_servicer: health_aio.HealthServicer,
        engine: Engine,
    ) -> None:
        self.config = config
        self.server = server
        self.port = port
        self.certificates = certificates
        self.revocations = revocations
        self.health = health_servicer
        self.engine = engine

    @property
    def address(self) -> str:
        """``host:port`` where the node listens, with the port actually bound."""
        host, _ = self.config.listen_host_port
        return f"[{host}]:{self.port}" if ":" in host else f"{host}:{self.port}"

    async def start(self) -> None:
        """Start serving and report every service SERVING to health checks."""
        await self.server.start()
        for name in ("", *SERVICE_NAMES):
            await self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        log.info("node_started", node=self.config.node.id, listen=self.address)

    async def stop(self, grace: float | None = 5.0) -> None:
        """Report NOT_SERVING, finish calls in flight for up to ``grace`` seconds, stop."""
        await self.health.enter_graceful_shutdown()
        await self.server.stop(grace)
        self.engine.dispose()
        log.info("node_stopped", node=self.config.node.id)

    async def wait(self) -> None:
        """Return when the server has stopped."""
        await self.server.wait_for_termination()


def open_database(config: NodeConfig) -> Engine:
    """An engine for the node's database with the schema migrated to the newest revision."""
    engine = make_engine(config.database_url)
    migrate(engine)
    return engine


def build_server(
    config: NodeConfig,
    servicers: Servicers | None = None,
    *,
    engine: Engine | None = None,
    audit: AuditLog | None = None,
) -> NodeServer:
    """Assemble the node server (call inside the event loop that will run it).

    ``audit`` is where refusals are recorded (:mod:`gateway.rpc.status`);
    a bare server without one records none.

    Raises ConfigError naming the key when TLS files are unusable and
    StartupError when the listen address cannot be bound. Runs the storage
    migrations unless an ``engine`` is passed in.
    """
    servicers = servicers or Servicers()
    tls = config.tls
    try:
        certificates = ServerCertificates(
            tls.ca_file,
            tls.cert_file,
            tls.key_file,
            node_id=config.node.id,
            passphrase_file=tls.key_passphrase_file,
        )
    except TlsFileError as exc:
        raise config_error(config, f"tls.{exc.key}", str(exc)) from exc
    try:
        revocations = RevocationList(
            tls.crl_file, tls.ca_file, number_file=config.node.state_dir / CRL_NUMBER_FILE
        )
    except (OSError, ValueError) as exc:
        raise config_error(config, "tls.crl_file", str(exc)) from exc
    engine = engine or open_database(config)
    age = tls.max_connection_age_seconds
    server = grpc.aio.server(
        interceptors=[AuthInterceptor(config.node.id, revocations, audit, max_stream_age=age)],
        options=[
            # gRPC sets SO_REUSEPORT by default, which lets a second node bind a
            # port that is already taken and silently share its traffic.
            ("grpc.so_reuseport", 0),
            ("grpc.max_connection_age_ms", age * 1000),
            ("grpc.max_connection_age_grace_ms", CONNECTION_AGE_GRACE_SECONDS * 1000),
        ],
    )
    partner_pb2_grpc.add_PartnerServiceServicer_to_server(servicers.partner, server)
    case_pb2_grpc.add_CaseServiceServicer_to_server(servicers.case, server)
    federation_pb2_grpc.add_FederationServiceServicer_to_server(servicers.federation, server)
    audit_pb2_grpc.add_AuditServiceServicer_to_server(servicers.audit, server)
    health_servicer = health_aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    _serve_reflection(server, (*SERVICE_NAMES, health.SERVICE_NAME))
    try:
        port = server.add_secure_port(config.node.listen, certificates.credentials())
    except RuntimeError as exc:
        engine.dispose()
        raise StartupError(
            f"{config.source}: node.listen: cannot listen on {config.node.listen} "
            "(address in use or not local?)"
        ) from exc
    return NodeServer(
        config=config,
        server=server,
        port=port,
        certificates=certificates,
        revocations=revocations,
        health_servicer=health_servicer,
        engine=engine,
    )


def _add_reflection_v1_descriptor() -> None:
    """Put ``grpc/reflection/v1/reflection.proto`` in the default pool.

    grpcio-reflection ships only v1alpha; v1 has the same messages under
    another package, so its descriptor is v1alpha's with the package renamed,
    and clients can look the v1 service up by reflection like any other.
    """
    pool = descriptor_pool.Default()
    try:
        pool.FindFileByName("grpc/reflection/v1/reflection.proto")
        return
    except KeyError:
        pass
    proto = descriptor_pb2.FileDescriptorProto()
    reflection_pb2.DESCRIPTOR.CopyToProto(proto)
    old, new = ".grpc.reflection.v1alpha.", ".grpc.reflection.v1."
    proto.name = "grpc/reflection/v1/reflection.proto"
    proto.package = "grpc.reflection.v1"
    for message in proto.message_type:
        for f in message.field:
            if f.type_name:
                f.type_name = f.type_name.replace(old, new)
    for service in proto.service:
        for method in service.method:
            method.input_type = method.input_type.replace(old, new)
            method.output_type = method.output_type.replace(old, new)
    pool.AddSerializedFile(proto.SerializeToString())


def _serve_reflection(server: grpc.aio.Server, services: tuple[str, ...]) -> None:
    """Serve reflection as v1 and v1alpha, with one servicer.

    The two versions' messages are identical on the wire, so the v1 method
    is the v1alpha servicer behind v1's method name.
    """
    _add_reflection_v1_descriptor()
    servicer = AsyncReflectionServicer((*services, REFLECTION_V1, reflection.SERVICE_NAME))
    reflection_pb2_grpc.add_ServerReflectionServicer_to_server(servicer, server)
    v1 = grpc.method_handlers_generic_handler(
        REFLECTION_V1,
        {
            "ServerReflectionInfo": grpc.stream_stream_rpc_method_handler(
                servicer.ServerReflectionInfo,
                request_deserializer=reflection_pb2.ServerReflectionRequest.FromString,
                response_serializer=reflection_pb2.ServerReflectionResponse.SerializeToString,
            )
        },
    )
    server.add_generic_rpc_handlers((v1,))


__all__ = ["ConfigError", "NodeServer", "Servicers", "StartupError", "build_server"]
