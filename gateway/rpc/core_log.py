"""grpc core's own log as JSON lines, with refused TLS handshakes named by peer and reason.

A handshake that fails never reaches Python: grpc's Python API offers no
hook on a connection before TLS completes, so the interceptor cannot see it,
and grpc core logs it through absl straight to file descriptor 2, as a plain
line without the peer's address. :func:`route_grpc_log` therefore puts a
pipe on descriptor 2 and reads it in a thread:

- with grpc's ``handshaker`` tracer on (:func:`gateway.grpc_env.trace_handshakes`,
  which must run before grpc is imported), a failed handshake is traced with
  the peer address and grpc's error; it becomes one ``tls_handshake_refused``
  line (a client we refused, or that refused us) with ``peer``, ``reason``
  and ``tls_error``. The tracer's other lines are dropped;
- every other grpc core line becomes a ``grpc_core`` line with its level and
  source; anything else written to descriptor 2 passes through unchanged.

The node's structlog output and Python's ``sys.stderr`` go to the original
descriptor 2 directly.
"""

from __future__ import annotations

import os
import re
import select
import sys
import threading
from dataclasses import dataclass, field
from typing import Any, TextIO

from gateway.logging import get_logger

log = get_logger("tls")

_HEADER = re.compile(
    r"^(?P<level>[IWEF])\d{4} \d\d:\d\d:\d\d\.\d+\s+\d+ (?P<file>[^\s:\]]+):(?P<line>\d+)\] "
    r"(?P<message>.*)$"
)
_CONTINUATION = re.compile(r"^($|\s|=== |src/core/\S+:\d+$)")
"""How the rest of a multi-line grpc message starts (status traces, argument lists)."""
_FAILED = re.compile(r"CallNextHandshakerLocked: error=(?P<error>.*?) shutdown=", re.DOTALL)
_PEER = re.compile(r"grpc\.internal\.endpoint_peer_address=(?P<peer>[^,}\s]+)")
_TARGET = re.compile(r"grpc\.server_uri=(?P<target>[^,}\s]+)")
_TLS_ERROR = re.compile(r"OPENSSL_internal:(?P<code>[A-Z0-9_]+)")
_LEVELS = {"I": "info", "W": "warning", "E": "error", "F": "critical"}
_TRACER_FILES = frozenset({"handshaker.cc", "channel_trace.h", "ssl_transport_security.cc"})
_FLUSH_SECONDS = 0.2

REASONS = {
    "NO_SHARED_CIPHER": "no TLS 1.3: the client offered only TLS 1.2 or older",
    "UNSUPPORTED_PROTOCOL": "no TLS 1.3: the client offered only TLS 1.2 or older",
    "TLSV1_ALERT_PROTOCOL_VERSION": "no TLS 1.3: the other side does not speak it",
    "PEER_DID_NOT_RETURN_A_CERTIFICATE": "the client sent no certificate",
    "CERTIFICATE_VERIFY_FAILED": (
        "the certificate does not verify against the federation CA "
        "(another CA, expired or not yet valid)"
    ),
    "TLSV1_ALERT_UNKNOWN_CA": "the other side does not trust our CA",
    "SSLV3_ALERT_BAD_CERTIFICATE": "the other side refused our certificate",
    "SSLV3_ALERT_CERTIFICATE_EXPIRED": "the other side says our certificate expired",
    "WRONG_VERSION_NUMBER": "not TLS: a plaintext client, or another protocol",
    "HTTP_REQUEST": "not TLS: a plaintext HTTP request",
}
"""What a BoringSSL error of a failed handshake means for an operator."""


def describe_failure(error: str) -> tuple[str, str]:
    """The ``(tls_error, reason)`` of grpc's handshake error text."""
    found = _TLS_ERROR.search(error)
    if found is not None:
        code = found["code"]
        return code, REASONS.get(code, f"TLS error {code}")
    first = error.split("\n", 1)[0].strip()
    return "", first[:200] or "unknown"


@dataclass
class CoreLogRouter:
    """Turns grpc core's log text into log lines; :meth:`feed` takes raw lines."""

    passthrough: TextIO
    """Where lines that are not grpc's go (the original stderr)."""
    traced: bool = True
    """Whether grpc's handshaker tracer is on; without it a refusal is logged without peer."""
    _record: list[str] = field(default_factory=list)
    _header: re.Match[str] | None = None

    def feed(self, line: str) -> None:
        """Take one line (without its newline)."""
        header = _HEADER.match(line)
        if header is not None:
            self.flush()
            self._header = header
            self._record = [header["message"]]
        elif self._header is not None and _CONTINUATION.match(line):
            self._record.append(line)
        else:
            self.flush()
            self.passthrough.write(line + "\n")
            self.passthrough.flush()

    def flush(self) -> None:
        """Emit the record being gathered, if any."""
        header, self._header = self._header, None
        if header is None:
            return
        text = "\n".join(self._record)
        self._record = []
        self._emit(header, text)

    def _emit(self, header: re.Match[str], text: str) -> None:
        source = header["file"]
        failed = _FAILED.search(text) if source == "handshaker.cc" else None
        if failed is not None and not failed["error"].startswith("OK"):
            self._refused(failed["error"], text)
            return
        if not self.traced and text.startswith("Handshake failed"):
            self._refused(text, text)
            return
        if source in _TRACER_FILES:
            return
        level = _LEVELS.get(header["level"], "info")
        fields: dict[str, Any] = {"source": f"{source}:{header['line']}", "message": text[:2000]}
        getattr(log, level)("grpc_core", **fields)

    def _refused(self, error: str, text: str) -> None:
        peer = _PEER.search(text)
        target = _TARGET.search(text)
        code, reason = describe_failure(error)
        fields: dict[str, Any] = {
            "peer": peer["peer"] if peer else "unknown",
            "reason": reason,
            "tls_error": code,
            "side": _side(text),
        }
        if target is not None:
            fields["target"] = target["target"]
        log.warning("tls_handshake_refused", **fields)


def _side(text: str) -> str:
    """Whether the node refused a client (server) or a server refused the node (client)."""
    if "grpc.internal." not in text:
        return "unknown"
    # A server-side handshake carries the server's credentials.
    return "server" if "grpc.internal.server_credentials" in text else "client"


def _pump(read_fd: int, router: CoreLogRouter) -> None:
    poller = select.poll()
    poller.register(read_fd, select.POLLIN)
    pending = b""
    while True:
        if not poller.poll(_FLUSH_SECONDS * 1000):
            # Quiet for a moment: the last record is complete.
            router.flush()
            continue
        chunk = os.read(read_fd, 65536)
        if not chunk:
            router.flush()
            return
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for line in lines:
            router.feed(line.decode("utf-8", errors="replace"))


def route_grpc_log(*, traced: bool = True) -> TextIO:
    """Read descriptor 2 through a :class:`CoreLogRouter`; returns the original stderr.

    Call once, early in the node process, and give the returned stream to
    :func:`gateway.logging.configure_logging`. ``traced`` says whether grpc's
    handshaker tracer is on (:func:`gateway.grpc_env.trace_handshakes`).
    """
    original = os.fdopen(os.dup(2), "w", buffering=1, encoding="utf-8")
    read_fd, write_fd = os.pipe()
    os.dup2(write_fd, 2)
    os.close(write_fd)
    sys.stderr = original
    router = CoreLogRouter(original, traced)
    threading.Thread(target=_pump, args=(read_fd, router), name="grpc-log", daemon=True).start()
    return original
