"""How grpc core is configured before it starts: TLS 1.3 only, and handshake tracing.

grpc core reads its environment once, when the ``grpc`` package is first
imported; setting a variable later changes nothing. So this module must run
before anything imports grpc: ``gateway/__init__.py`` calls :func:`apply`,
and every gateway module is imported through that package.

BoringSSL, which grpc uses, offers TLS 1.3 whatever the cipher list says and
cannot be told a minimum version through grpc's Python API. What it can be
told is the list of TLS 1.2 suites: :data:`CIPHER_SUITES` keeps one, an
ECDHE-RSA suite, because the list may not be empty of them. Every Schakel key
is ECDSA, so no TLS 1.2 suite can be agreed, and a TLS 1.2 handshake fails
with ``NO_SHARED_CIPHER`` on the server and on every outgoing channel. The
interceptor checks ``ssl_tls_version`` on every call as well
(:mod:`gateway.rpc.auth`), in case grpc was imported before this ran.
"""

from __future__ import annotations

import os
import sys

CIPHER_SUITES = ":".join(
    (
        "TLS_AES_128_GCM_SHA256",
        "TLS_AES_256_GCM_SHA384",
        "TLS_CHACHA20_POLY1305_SHA256",
        "ECDHE-RSA-AES128-GCM-SHA256",
    )
)
"""The TLS 1.3 suites, plus one TLS 1.2 suite that an ECDSA key can never use."""

HANDSHAKE_TRACER = "handshaker"
"""The grpc tracer whose failure lines carry a refused handshake's peer address and reason."""

applied_before_grpc = False
"""True when :func:`apply` set the cipher suites before grpc was imported (so they hold)."""


def apply() -> None:
    """Set ``GRPC_SSL_CIPHER_SUITES`` (overriding any other value) before grpc starts."""
    global applied_before_grpc  # noqa: PLW0603 - one flag for the whole process
    os.environ["GRPC_SSL_CIPHER_SUITES"] = CIPHER_SUITES
    applied_before_grpc = applied_before_grpc or "grpc" not in sys.modules


def trace_handshakes() -> bool:
    """Turn on grpc's handshake tracer (see :mod:`gateway.rpc.core_log`) if still possible.

    Returns False when grpc is already imported, so the tracer can no longer
    be turned on from here (set ``GRPC_TRACE=handshaker`` in the environment).
    """
    tracers = [t for t in os.environ.get("GRPC_TRACE", "").split(",") if t]
    if HANDSHAKE_TRACER in tracers:
        return True
    if "grpc" in sys.modules:
        return False
    os.environ["GRPC_TRACE"] = ",".join([*tracers, HANDSHAKE_TRACER])
    return True
