"""Who may call what: the server interceptor that authenticates and authorises every call.

TLS has already verified the client's chain to the federation CA and its
validity period at handshake. Per call, the interceptor then:

1. opens the call's span from the W3C trace context (:mod:`gateway.tracing`)
   and sends ``traceparent`` back in the initial metadata;
2. refuses a connection that is not TLS 1.3 (``ssl_tls_version`` of the
   auth context; the cipher suites of :mod:`gateway.grpc_env` should already
   have stopped it in the handshake);
3. reads the peer certificate from the auth context, refuses it when it is
   revoked (the CRL is re-read when it changes) or expired since the
   handshake, and turns it into an :class:`~certs.identity.Identity`
   (UNAUTHENTICATED otherwise);
4. checks the access rules below (PERMISSION_DENIED with the reason);
5. exposes identity and trace through :func:`current_identity` and
   :func:`gateway.tracing.current_trace`, hands the call's gRPC deadline to
   :func:`gateway.deadline.start_call`, and logs one line per call.

A stream is checked again before every message it sends: a certificate
revoked or expired while a partner's task stream is open stops the stream
(UNAUTHENTICATED) before the next task leaves. A stream also ends (OK) when
it reaches its maximum age, so that a client opens a new one and is checked
again.

grpc.aio's ``intercept_service`` sees no peer, so the check wraps the
handler's behaviour, which receives the ServicerContext. Servicer methods
must therefore be ``async`` (coroutines, or async generators for streams).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import inspect
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NoReturn

import grpc
import structlog
from cryptography import x509

from certs.identity import Identity, IdentityError, PeerKind, identity_from_certificate
from gateway import tracing
from gateway.audit.store import AuditLog
from gateway.deadline import start_call
from gateway.errors import DeniedError, NotAuthenticatedError, SchakelError
from gateway.flows.crossing import begin_call
from gateway.logging import get_logger
from gateway.observability import calls
from gateway.rpc.status import answer_fault, answer_refusal
from gateway.tls import TLS_VERSION, RevocationList

log = get_logger("rpc")

PARTNER_SERVICE = "schakel.v1.PartnerService"
CASE_SERVICE = "schakel.v1.CaseService"
FEDERATION_SERVICE = "schakel.v1.FederationService"
AUDIT_SERVICE = "schakel.v1.AuditService"
TRANSCRYPTOR_SERVICE = "schakel.v1.TranscryptorService"
GET_SIGNALS = f"/{FEDERATION_SERVICE}/GetSignals"
ENROL = f"/{TRANSCRYPTOR_SERVICE}/Enrol"
ADD_CHECKPOINT = f"/{FEDERATION_SERVICE}/AddCheckpoint"

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
    # Served by a transcryptor only; its own allow-list decides per pair and activity.
    TRANSCRYPTOR_SERVICE: AccessRule(frozenset({PeerKind.NODE}), "federation nodes"),
}
"""Access by service; a service without a rule is denied to everyone."""

METHOD_RULES: dict[str, AccessRule] = {
    GET_SIGNALS: AccessRule(frozenset({PeerKind.COLLECTOR}), "the national collector"),
    ENROL: AccessRule(
        frozenset({PeerKind.NODE, PeerKind.PARTNER}), "domains (nodes and partner organisations)"
    ),
    # Nodes witness each other's logs and the transcryptors' (whose keys they pin).
    ADD_CHECKPOINT: AccessRule(
        frozenset({PeerKind.NODE, PeerKind.TRANSCRYPTOR}), "federation nodes and transcryptors"
    ),
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

DEFAULT_MAX_STREAM_AGE_SECONDS = 3600.0


class _CheckedWrites:
    """A servicer context whose ``write`` checks the peer first (coroutine-style streams)."""

    def __init__(self, context: grpc.aio.ServicerContext[Any, Any], check: Callable[[], None]):
        self._context = context
        self._check = check

    async def write(self, message: Any) -> None:
        """Send ``message`` if the peer's certificate is still good (NotAuthenticatedError)."""
        self._check()
        await self._context.write(message)

    def __getattr__(self, name: str) -> Any:
        """Everything else is the real context's."""
        return getattr(self._context, name)


if TYPE_CHECKING:
    _ServerInterceptor = grpc.aio.ServerInterceptor[Any, Any]
else:  # generic only in grpc-stubs, not at run time
    _ServerInterceptor = grpc.aio.ServerInterceptor


class AuthInterceptor(_ServerInterceptor):
    """Authenticates, authorises, traces and logs every call to a node."""

    def __init__(
        self,
        node_id: str,
        revocations: RevocationList,
        audit: AuditLog | None = None,
        *,
        max_stream_age: float = DEFAULT_MAX_STREAM_AGE_SECONDS,
    ) -> None:
        self.node_id = node_id
        self.revocations = revocations
        self.audit = audit
        """Where refusals of data-bearing calls are recorded; None on a bare server."""
        self.max_stream_age = max_stream_age
        """Seconds after which a server stream ends, so its client opens a new one."""
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

    def _authenticate(self, context: grpc.aio.ServicerContext[Any, Any]) -> _Peer:
        auth = context.auth_context()
        versions = [v.decode(errors="replace") for v in auth.get("ssl_tls_version", ())]
        if versions != [TLS_VERSION]:
            found = versions[0] if versions else "no TLS version"
            raise NotAuthenticatedError(
                f"the connection uses {found}; a Schakel node speaks {TLS_VERSION} only"
            )
        pems = list(auth.get("x509_pem_cert", ()))
        if not pems:
            raise NotAuthenticatedError("no client certificate")
        peer = self._peer(pems[0])
        self._check(peer)
        return peer

    def _check(self, peer: _Peer) -> None:
        """Refuse ``peer`` when its certificate is revoked or expired now."""
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

    async def _enter(self, method: str, context: grpc.aio.ServicerContext[Any, Any]) -> _Peer:
        """Start the call's span and check the caller; aborts the call when refused."""
        trace = tracing.child_of(context.invocation_metadata() or ())
        tracing.set_current_trace(trace)
        structlog.contextvars.bind_contextvars(
            trace_id=trace.trace_id, span_id=trace.span_id, parent_span_id=trace.parent_span_id
        )
        await context.send_initial_metadata([("traceparent", trace.traceparent)])
        peer = self._authenticate(context)
        identity = peer.identity
        structlog.contextvars.bind_contextvars(peer=identity.uri)
        reason = authorize(identity, method, self.node_id)
        if reason is not None:
            raise DeniedError(f"{method}: {reason}")
        _identity.set(identity)
        begin_call()
        start_call(context.time_remaining())
        return peer

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
        calls.finished(method, fields["status"], time.perf_counter() - start)

    async def _answer(
        self, method: str, context: grpc.aio.ServicerContext[Any, Any], error: Exception
    ) -> NoReturn:
        """Answer a refusal with its status (audited), anything else with INTERNAL."""
        if isinstance(error, SchakelError):
            await answer_refusal(method, error, context, self.audit)
        await answer_fault(method, context, error)

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
                except Exception as exc:
                    error = exc
                    await self._answer(method, context, exc)
            except BaseException as exc:
                error = error or exc
                raise
            finally:
                self._finish(method, context, start, error)

        return run

    async def _stream(
        self,
        peer: _Peer,
        behaviour: Callable[..., Any],
        request: Any,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> AsyncIterator[Any]:
        """The behaviour's messages, each sent only after the peer is checked again.

        Ends (without error) at :attr:`max_stream_age`. Only the wait for the
        next message runs under the timeout, never the ``yield``: a timeout
        around a ``yield`` would cancel whatever grpc is doing with the message.
        """
        end = asyncio.get_running_loop().time() + self.max_stream_age
        timer = asyncio.timeout_at(end)
        if not inspect.isasyncgenfunction(behaviour):
            # A coroutine handler streams through context.write itself.
            checked = _CheckedWrites(context, lambda: self._check(peer))
            try:
                async with timer:
                    await behaviour(request, checked)
            except TimeoutError:
                if not timer.expired():
                    raise
                log.info("stream_aged_out", max_age_s=self.max_stream_age)
            return
        messages = behaviour(request, context)
        try:
            while True:
                timer = asyncio.timeout_at(end)  # a Timeout is entered once only
                try:
                    async with timer:
                        message = await anext(messages)
                except StopAsyncIteration:
                    return
                except TimeoutError:
                    if not timer.expired():
                        raise
                    log.info("stream_aged_out", max_age_s=self.max_stream_age)
                    return
                self._check(peer)
                yield message
        finally:
            await messages.aclose()

    def _wrap_stream(self, method: str, behaviour: Callable[..., Any]) -> Callable[..., Any]:
        async def run(
            request: Any, context: grpc.aio.ServicerContext[Any, Any]
        ) -> AsyncIterator[Any]:
            start = time.perf_counter()
            error: BaseException | None = None
            try:
                try:
                    peer = await self._enter(method, context)
                    async for response in self._stream(peer, behaviour, request, context):
                        yield response
                except grpc.aio.AbortError:
                    raise
                except Exception as exc:
                    error = exc
                    await self._answer(method, context, exc)
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
