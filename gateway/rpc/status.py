"""The one place where a refusal becomes a gRPC answer: mapped, capped and audited.

Flows raise :class:`~gateway.errors.SchakelError`; the interceptor
(:mod:`gateway.rpc.auth`) hands it to :func:`answer_refusal`, which

1. writes the refusal record of the call's crossing (status ERROR, with the
   subject when the request carried one), so the refusal is in the person's
   inzage; when that write fails the answer is ``UNAVAILABLE`` instead;
2. answers the status code of the error's branch, with its message cut to
   :data:`MAX_MESSAGE_BYTES`.

Anything else a handler raises is a fault of the node: :func:`answer_fault`
answers ``INTERNAL`` with the trace id and quotes nothing.
"""

from __future__ import annotations

from typing import Any, NoReturn

import grpc

from gateway import tracing
from gateway.audit.store import AuditLog
from gateway.errors import (
    AuditUnavailableError,
    ConflictError,
    DataLossError,
    DeniedError,
    ExhaustedError,
    InvalidInputError,
    NotAuthenticatedError,
    NotFoundError,
    OutOfRangeError,
    SchakelError,
    TimedOutError,
    UnavailableError,
    UnsupportedError,
    WrongStateError,
)
from gateway.flows.crossing import record_refusal
from gateway.logging import get_logger

log = get_logger("rpc")

Context = grpc.aio.ServicerContext[Any, Any]

MAX_MESSAGE_BYTES = 1024
"""gRPC sends the status message as metadata; far below its 16 KB limit."""

STATUS: dict[type[SchakelError], grpc.StatusCode] = {
    InvalidInputError: grpc.StatusCode.INVALID_ARGUMENT,
    OutOfRangeError: grpc.StatusCode.OUT_OF_RANGE,
    NotAuthenticatedError: grpc.StatusCode.UNAUTHENTICATED,
    DeniedError: grpc.StatusCode.PERMISSION_DENIED,
    NotFoundError: grpc.StatusCode.NOT_FOUND,
    ConflictError: grpc.StatusCode.ALREADY_EXISTS,
    WrongStateError: grpc.StatusCode.FAILED_PRECONDITION,
    ExhaustedError: grpc.StatusCode.RESOURCE_EXHAUSTED,
    TimedOutError: grpc.StatusCode.DEADLINE_EXCEEDED,
    UnavailableError: grpc.StatusCode.UNAVAILABLE,
    DataLossError: grpc.StatusCode.DATA_LOSS,
    UnsupportedError: grpc.StatusCode.UNIMPLEMENTED,
}
"""Each branch of the error tree and the status it is answered with."""


def status_of(error: SchakelError) -> grpc.StatusCode:
    """The status code of ``error``'s nearest branch in :data:`STATUS`."""
    for cls in type(error).__mro__:
        code = STATUS.get(cls)
        if code is not None:
            return code
    return grpc.StatusCode.INTERNAL


def capped(message: str) -> str:
    """``message`` cut to :data:`MAX_MESSAGE_BYTES` of UTF-8, marked when cut."""
    data = message.encode()
    if len(data) <= MAX_MESSAGE_BYTES:
        return message
    marker = " [cut]"
    return data[: MAX_MESSAGE_BYTES - len(marker)].decode(errors="ignore") + marker


async def answer_refusal(
    method: str, error: SchakelError, context: Context, audit: AuditLog | None
) -> NoReturn:
    """Audit the refusal of the call's crossing, then answer ``error``'s status."""
    if audit is not None and not isinstance(error, AuditUnavailableError):
        try:
            await record_refusal(audit)
        except AuditUnavailableError as failed:
            error = failed
    code = status_of(error)
    # The message can quote request values, so the log keeps only its kind.
    log.warning("rpc_refused", method=method, status=code.name, error_type=type(error).__name__)
    await context.abort(code, capped(error.message))
    raise AssertionError("context.abort returned")  # pragma: no cover - abort raises


async def answer_fault(method: str, context: Context, error: BaseException) -> NoReturn:
    """Answer an unexpected failure with INTERNAL and a message that quotes nothing.

    gRPC's default answer (UNKNOWN with ``str(error)``) would hand the caller
    whatever the exception carries: SQL with its parameters, pseudonyms, values.
    """
    trace = tracing.current_trace()
    trace_id = trace.trace_id if trace is not None else "unknown"
    log.error("rpc_failed", method=method, error_type=type(error).__name__)
    await context.abort(
        grpc.StatusCode.INTERNAL,
        f"{method} failed inside the node ({type(error).__name__}); "
        f"its operators can find trace {trace_id} in the node's log",
    )
    raise AssertionError("context.abort returned")  # pragma: no cover - abort raises
