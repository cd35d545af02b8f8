"""Who may call what: the server interceptor that authenticates and authorises every call.

TLS has already verified the client's chain to the federation CA and its
validity period at handshake. Per call, the interceptor then:

1. opens the call's span from the W3C trace context (:mod:`gateway.tracing`)
   and sends ``traceparent`` back in the initial metadata;
2. reads the peer certificate from the auth context, refuses it when it is
   revoked (the CRL is re-read when it changes) or expired since the
   handshake, and turns it into an :class:`~certs.identity.Identity`
   (UNAUTHENTICATED otherwise);
3. checks the access rules below (PERMISSION_DENIED with the reason);
4. exposes identity and trace through :func:`current_identity` and
   :func:`gateway.tracing.current_trace`, hands the call's gRPC deadline to
   :func:`gateway.flows.deadline.start_call`, and logs one line per call.

grpc.aio's ``intercept_service`` sees no peer, so the check wraps the
handler's behaviour, which receives the ServicerContext. Servicer methods
must therefore be ``async`` (coroutines, or async generators for streams).
"""

from __future__ import annotations

import datetime as dt
import inspect
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import grpc
import structlog
from cryptography import x509

from certs.identity import Identity, IdentityError, PeerKind, identity_from_certificate
from gateway import tracing
from gateway.audit.store import AuditLog
from gateway.errors import DeniedError, NotAuthenticatedError, SchakelError
from gateway.flows.crossing import begin_call
from gateway.flows.deadline import start_call
from gateway.logging import get_logger
from gateway.rpc.status import answer_fault, answer_refusal
from gateway.tls import RevocationList

log = get_logger("rpc")

PARTNER_SERVICE = "schakel.v1.PartnerService"
CASE_SERVICE = "schakel.v1.CaseService"
FEDERATION_SERVICE = "schakel.v1.FederationService"
AUDIT_SERVICE = "schakel.v1.AuditService"
GET_SIGNALS = f"/{FEDERATION_SERVICE}/GetSignals"

OPEN_SERVICES = frozenset(
    {
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
        "grpc.reflection.v1.ServerReflection",
    }
)
"""Open to any valid, unrevoked federation certificate."""


@dataclass(frozen=True)
class AccessRule:
    """Which callers a service or method admits."""

    kinds: frozenset[PeerKind]
    description: str
    own_node: bool = False
    """The caller must belong to this node."""
    roles: frozenset[str] = frozenset()
    """If not empty, the caller needs one of these roles."""

    def refusal(self, identity: Identity, node_id: str) -> str | None:
        """Why ``identity`` may not call, or None when it may."""
        if identity.kind not in self.kinds:
            return f"only {self.description} may call this; the caller is a {identity.kind}"
        if self.own_node and identity.node_id != node_id:
            return (
                f"only {self.description} may call this; the caller belongs to node "
                f"{identity.node_id!r}, this is node {node_id!r}"
            )
        if self.roles and not identity.roles & self.roles:
            return f"only {self.description} may call this; the caller has no such role"
        return None


SERVICE_RULES: dict[str, AccessRule] = {
    PARTNER_SERVICE: AccessRule(
        frozenset({PeerKind.PARTNER}), "partners of this node", own_node=True
    ),
    FEDERATION_SERVICE: AccessRule(frozenset({PeerKind.NODE}), "federation nodes"),
    CASE_SERVICE: AccessRule(
        frozenset({PeerKind.OFFICER}),
        "the procesregisseur of this node",
        own_node=True,
        roles=frozenset({"procesregisseur"}),
    ),
    AUDIT_SERVICE: AccessRule(
        frozenset({PeerKind.OFFICER}),
        "officers (fg or procesregisseur) of this node",
        own_node=True,
        roles=frozenset({"fg", "procesregisseur"}),
    ),
}
"""Access by service; a service without a rule is denied to everyone."""

METHOD_RULES: dict[str, AccessRule] = {
    GET_SIGNALS: AccessRule(frozenset({PeerKind.COLLECTOR}), "the national collector"),
}
"""Per-method exceptions to :data:`SERVICE_RULES`."""


def authorize(identity: Identity, method: str, node_id: str) -> str | None:
    """Why ``identity`` may not call ``method`` (``/pkg.Service/Method``) on node ``node_id``.

    None means allowed. Default deny: a service with no rule is refused.
    """
    service = method.lstrip("/").rpartition("/")[0]
    if service in OPEN_SERVICES:
        return None
    rule = METHOD_RULES.get(method) or SERVICE_RULES.get(service)
    if rule is None:
        return f"no access rule covers {service}; denied by default"
    return rule.refusal(identity, node_id)


_identity: ContextVar[Identity | None] = ContextVar("schakel_identity", default=None)


def current_identity() -> Identity:
    """The verified identity of the caller of the RPC being handled.

    Raises LookupError outside an intercepted call, so a servicer cannot
    mistake "no caller" for some default.
    """
    identity = _identity.get()
    if identity is None:
        raise LookupError("no verified caller: not inside an intercepted RPC")
    return identity


@dataclass(frozen=True)
class _Peer:
    identity: Identity
    serial: int
    not_after: dt.datetime


_PEER_CACHE_MAX = 4096


if TYPE_CHECKING:
    _ServerInterceptor = grpc.aio.ServerInterceptor[Any, Any]
else:  # generic only in grpc-stubs, not at run time
    _ServerInterceptor = grpc.aio.ServerInterceptor


class AuthInterceptor(_ServerInterceptor):
    """Authenticates, authorises, traces and logs every call to a node."""

    def __init__(
        self, node_id: str, revocations: RevocationList, audit: AuditLog | None = None
    ) -> None:
        self.node_id = node_id
        self.revocations = revocations
        self.audit = audit
        """Where refusals of data-bearing calls are recorded; None on a bare server."""
        self._peers: dict[bytes, _Peer | str] = {}

    def _peer(self, pem: bytes) -> _Peer:
        cached = self._peers.get(pem)
        if cached is None:
            try:
                cert = x509.load_pem_x509_certificate(pem)
                cached = _Peer(
                    identity_from_certificate(cert), cert.serial_number, cert.not_valid_after_utc
                )
            except (ValueError, IdentityError) as exc:
                cached = f"client certificate is not a Schakel identity: {exc}"
            if len(self._peers) >= _PEER_CACHE_MAX:
                self._peers.clear()
            self._peers[pem] = cached
        if isinstance(cached, str):
            raise NotAuthenticatedError(cached)
        return cached

    def _authenticate(self, context: grpc.aio.ServicerContext[Any, Any]) -> Identity:
        pems = list(context.auth_context().get("x509_pem_cert", ()))
        if not pems:
            raise NotAuthenticatedError("no client certificate")
        peer = self._peer(pems[0])
        self.revocations.refresh()
        if self.revocations.is_revoked(peer.serial):
            raise NotAuthenticatedError(
                f"client certificate {peer.serial:x} of {peer.identity.uri} is revoked"
            )
        if peer.not_after < dt.datetime.now(dt.UTC):
            raise NotAuthenticatedError(
                f"client certificate of {peer.identity.uri} expired at "
                f"{peer.not_after:%Y-%m-%dT%H:%M:%SZ}"
            )
        return peer.identity

    async def _enter(self, method: str, context: grpc.aio.ServicerContext[Any, Any]) -> Identity:
        """Start the call's span and check the caller; aborts the call when refused."""
        trace = tracing.child_of(context.invocation_metadata() or ())
        tracing.set_current_trace(trace)
        structlog.contextvars.bind_contextvars(
            trace_id=trace.trace_id, span_id=trace.span_id, parent_span_id=trace.parent_span_id
        )
        await context.send_initial_metadata([("traceparent", trace.traceparent)])
        identity = self._authenticate(context)
        structlog.contextvars.bind_contextvars(peer=identity.uri)
        reason = authorize(identity, method, self.node_id)
        if reason is not None:
            raise DeniedError(f"{method}: {reason}")
        _identity.set(identity)
        begin_call()
        start_call(context.time_remaining())
        return identity

    def _finish(
        self,
        method: str,
        context: grpc.aio.ServicerContext[Any, Any],
        start: float,
        error: BaseException | None,
    ) -> None:
        fields: dict[str, Any] = {
            "method": method,
            "status": _status_name(context, error),
            "duration_ms": round((time.perf_counter() - start) * 1000, 3),
        }
        if error is not None and not isinstance(error, grpc.aio.AbortError):
            # The type only: an exception message may quote request content.
            fields["error_type"] = type(error).__name__
        log.info("rpc", **fields)

    def _wrap_unary(self, method: str, behaviour: Callable[..., Any]) -> Callable[..., Any]:
        async def run(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            start = time.perf_counter()
            error: BaseException | None = None
            try:
                try:
                    await self._enter(method, context)
                    return await behaviour(request, context)
                except grpc.aio.AbortError:
                    raise
                except SchakelError as exc:
                    error = exc
                    await answer_refusal(method, exc, context, self.audit)
                except Exception as exc:
                    error = exc
                    await answer_fault(method, context, exc)
            except BaseException as exc:
                error = error or exc
                raise
            finally:
                self._finish(method, context, start, error)

        return run

    def _wrap_stream(self, method: str, behaviour: Callable[..., Any]) -> Callable[..., Any]:
        async def run(
            request: Any, context: grpc.aio.ServicerContext[Any, Any]
        ) -> AsyncIterator[Any]:
            start = time.perf_counter()
            error: BaseException | None = None
            try:
                try:
                    await self._enter(method, context)
                    if inspect.isasyncgenfunction(behaviour):
                        async for response in behaviour(request, context):
                            yield response
                    else:
                        # A coroutine handler streams through context.write itself.
                        await behaviour(request, context)
                except grpc.aio.AbortError:
                    raise
                except SchakelError as exc:
                    error = exc
                    await answer_refusal(method, exc, context, self.audit)
                except Exception as exc:
                    error = exc
                    await answer_fault(method, context, exc)
            except BaseException as exc:
                error = error or exc
                raise
            finally:
                self._finish(method, context, start, error)

        return run

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any]]
        ],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any]:
        """Wrap the handler so that every behaviour runs behind the checks."""
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        method = handler_call_details.method
        wrapped: dict[str, Callable[..., Any]] = {}
        for kind in ("unary_unary", "stream_unary"):
            behaviour = getattr(handler, kind)
            if behaviour is not None:
                wrapped[kind] = self._wrap_unary(method, behaviour)
        for kind in ("unary_stream", "stream_stream"):
            behaviour = getattr(handler, kind)
            if behaviour is not None:
                wrapped[kind] = self._wrap_stream(method, behaviour)
        # RpcMethodHandler objects built by grpc.*_rpc_method_handler are namedtuples.
        replaced: grpc.RpcMethodHandler[Any, Any] = handler._replace(**wrapped)  # type: ignore[attr-defined]
        return replaced


def _status_name(context: grpc.aio.ServicerContext[Any, Any], error: BaseException | None) -> str:
    """The status the call ended with, as far as the context knows it."""
    code = context.code()
    if isinstance(code, grpc.StatusCode):
        return code.name
    if isinstance(code, int):
        for status in grpc.StatusCode:
            if status.value[0] == code:
                return status.name
    if error is not None and not isinstance(error, grpc.aio.AbortError):
        return grpc.StatusCode.UNKNOWN.name
    return grpc.StatusCode.OK.name
