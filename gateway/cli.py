"""The ``schakel`` command: one entry point, one sub-command per area.

Each area module exposes ``register(subparsers)``, adding its own
sub-command whose handler is stored as ``func`` and returns an exit code.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import sys
from collections.abc import Sequence

from gateway import grpc_env

# Area name -> module with register(); imported lazily so that `schakel certs`
# does not pay for importing gRPC and SQLAlchemy.
AREAS: dict[str, str] = {
    "certs": "certs.cli",
    "node": "gateway.node_cli",
    "policy": "policy.cli",
    "audit": "gateway.audit.cli",
    "signals": "gateway.collector.cli",
    "federation": "gateway.federation.cli",
    "transcryptor": "gateway.transcryptor.cli",
}


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser, with every area registered."""
    parser = argparse.ArgumentParser(
        prog="schakel",
        description="Schakel: secure federated data exchange for the Zorg- en Veiligheidshuizen.",
    )
    parser.add_argument("--version", action="version", version=version())
    sub = parser.add_subparsers(dest="area", required=True, metavar="AREA")
    for module in AREAS.values():
        importlib.import_module(module).register(sub)
    return parser


def version() -> str:
    """``schakel <version>`` with the versions of the libraries that shape its TLS."""
    versions = []
    for name in ("schakel", "grpcio", "cryptography"):
        try:
            versions.append(importlib.metadata.version(name))
        except importlib.metadata.PackageNotFoundError:
            versions.append("unknown")
    return f"schakel {versions[0]} (grpcio {versions[1]}, cryptography {versions[2]})"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the process exit code."""
    words = list(sys.argv[1:] if argv is None else argv)
    if words[:2] == ["node", "run"]:
        # grpc reads its tracers when first imported, which building the parser does.
        grpc_env.trace_handshakes()
    args = build_parser().parse_args(words)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
