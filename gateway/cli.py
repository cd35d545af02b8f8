# PYTHON_ARGCOMPLETE_OK
"""The ``schakel`` command: one entry point, one sub-command per area.

Each area module exposes ``register(subparsers)``, adding its own
sub-command whose handler is stored as ``func`` and returns an exit code.
Every parser of the tree is a :class:`CommandParser`, so a command's
description and its examples (the epilog) keep their line breaks.

A command line that stops short of a command (a bare ``schakel``, or
``schakel audit``) prints the help of where it stopped and exits 2, the
exit code of every other incomplete command line. Output cut off by the
reader (``schakel audit query ... | head``) ends quietly with exit code 141,
as a process killed by SIGPIPE. Tab completion comes from argcomplete when
it is installed (``eval "$(register-python-argcomplete schakel)"``).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import os
import sys
from collections.abc import Sequence
from typing import Any

from gateway import grpc_env

EXIT_USAGE = 2
EXIT_BROKEN_PIPE = 128 + 13
"""What a shell reports for a process that SIGPIPE ended (13), as ``cat`` or ``grep``."""


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


class CommandParser(argparse.ArgumentParser):
    """An argument parser that keeps the layout of descriptions and epilogs.

    Sub-parsers are made of the same class, so the whole tree keeps it.
    Sub-commands are never required by argparse itself: :func:`main` prints
    the help of a command line that names no command.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(*args, **kwargs)

    def add_subparsers(self, **kwargs: Any) -> Any:
        """Sub-commands as usual, but never required (see :func:`main`)."""
        kwargs["required"] = False
        return super().add_subparsers(**kwargs)


def build_parser() -> CommandParser:
    """The full argument parser, with every area registered."""
    parser = CommandParser(
        prog="schakel",
        description="Schakel: secure federated data exchange for the Zorg- en Veiligheidshuizen.",
        epilog="Run 'schakel AREA --help' for an area's commands, "
        "'schakel AREA COMMAND --help' for one command with examples.",
    )
    parser.add_argument("--version", action="version", version=version())
    sub = parser.add_subparsers(dest="area", metavar="AREA")
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


def _reached(parser: argparse.ArgumentParser, args: argparse.Namespace) -> argparse.ArgumentParser:
    """The deepest (sub-)parser the parsed command line chose."""
    while True:
        chooser = next(
            (a for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None
        )
        chosen = getattr(args, chooser.dest, None) if chooser is not None else None
        if chooser is None or chosen is None:
            return parser
        parser = chooser.choices[chosen]


def _complete(parser: argparse.ArgumentParser) -> None:
    """Answer a shell's completion request (and exit) when argcomplete is installed."""
    try:
        import argcomplete  # noqa: PLC0415 - optional: completion only
    except ImportError:
        return
    argcomplete.autocomplete(parser)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the process exit code."""
    words = list(sys.argv[1:] if argv is None else argv)
    if words[:2] == ["node", "run"]:
        # grpc reads its tracers when first imported, which building the parser does.
        grpc_env.trace_handshakes()
    parser = build_parser()
    _complete(parser)
    args = parser.parse_args(words)
    if not hasattr(args, "func"):
        _reached(parser, args).print_help()
        return EXIT_USAGE
    try:
        code: int = args.func(args)
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader is gone: send what Python still flushes at exit to
        # /dev/null, so that flush fails no more than this one did.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    return code


if __name__ == "__main__":
    sys.exit(main())
