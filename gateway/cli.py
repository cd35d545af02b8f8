"""The ``schakel`` command: one entry point, one sub-command per area.

Each area module exposes ``register(subparsers)``, adding its own
sub-command whose handler is stored as ``func`` and returns an exit code.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# Area name -> module with register(); imported lazily so that `schakel certs`
# does not pay for importing gRPC and SQLAlchemy.
AREAS: dict[str, str] = {
    "certs": "certs.cli",
    "node": "gateway.node_cli",
    "policy": "policy.cli",
    "audit": "gateway.audit.cli",
    "signals": "gateway.collector.cli",
    "federation": "gateway.federation.cli",
}


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser, with every area registered."""
    parser = argparse.ArgumentParser(
        prog="schakel",
        description="Schakel: secure federated data exchange for the Zorg- en Veiligheidshuizen.",
    )
    sub = parser.add_subparsers(dest="area", required=True, metavar="AREA")
    for module in AREAS.values():
        importlib.import_module(module).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the process exit code."""
    args = build_parser().parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
