"""``schakel node``: run a node, migrate its database, or enrol it with the transcryptors.

Exit codes: 0 on a clean stop, 2 when the configuration is unusable (the
message names the key: also when the node's certificate is not its own, does
not chain to ``tls.ca_file`` or does not match ``tls.key_file``), 1 for other
start-up failures. A database problem is named as ``database.url`` in one
line, without a traceback: 1 when its server does not answer, else 2 (a bad
URL, a file that is no database, a schema from another version).

``node run`` routes grpc core's log into JSON lines
(:mod:`gateway.rpc.core_log`), so that a refused TLS handshake is logged
with the peer's address and the reason.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gateway import grpc_env
from gateway.config import ConfigError, NodeConfig, load_config
from gateway.logging import configure_logging, get_logger

if TYPE_CHECKING:
    from sqlalchemy.exc import SQLAlchemyError

    from gateway.storage import StorageError

EXIT_CONFIG = 2
EXIT_STARTUP = 1
_CONFIG = "the node's TOML configuration file, e.g. /etc/schakel/node.toml"


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``node`` area to the ``schakel`` command; returns its parser."""
    node: argparse.ArgumentParser = subparsers.add_parser(
        "node",
        help="run a Schakel node",
        description="Run a node, or bring its database up to date. Exit codes: 0 a clean "
        "stop, 2 an unusable configuration (the message names the key), 1 another start-up "
        "failure (a port in use, a database that does not answer).",
    )
    sub = node.add_subparsers(dest="node_command", required=True, metavar="COMMAND")
    run = sub.add_parser(
        "run",
        help="serve until SIGINT/SIGTERM",
        description="Load and check node.toml (SCHAKEL_<SECTION>__<KEY> variables override "
        "it), migrate the database, and serve until SIGINT or SIGTERM; calls in flight get "
        "five seconds to finish. Exits 2 when the configuration is unusable, naming the key "
        "(e.g. tls.cert_file when the certificate is not this node's). With [admin] listen "
        "set, /metrics, /healthz and /readyz answer on that port.",
        epilog="""examples:
  schakel node run --config /etc/schakel/node.toml
  SCHAKEL_NODE__LOG_LEVEL=debug schakel node run --config node.toml""",
    )
    run.add_argument("--config", type=Path, required=True, help=_CONFIG)
    run.set_defaults(func=_run)
    mig = sub.add_parser(
        "migrate",
        help="bring the database schema to the newest revision",
        description="Apply the database migrations up to this version's newest revision and "
        "exit; 'node run' does the same at start. Run it before starting the new version "
        "of an upgrade, after a backup.",
        epilog="""examples:
  schakel node migrate --config /etc/schakel/node.toml""",
    )
    mig.add_argument("--config", type=Path, required=True, help=_CONFIG)
    mig.set_defaults(func=_migrate)
    enrol = sub.add_parser(
        "enrol",
        help="fetch this node's factor from every transcryptor and write its domain key",
        description="Ask every [[transcryptors]] entry for this node's factor over mTLS (with "
        "the node's certificate), multiply them, check the key against a conversion through "
        "the chain, and write it to pseudonyms.domain_key (mode 0600), sealed with the "
        "passphrase in pseudonyms.domain_key_passphrase_file when that is set.",
        epilog="""examples:
  schakel node enrol --config /etc/schakel/node.toml""",
    )
    enrol.add_argument("--config", type=Path, required=True, help="the node.toml")
    enrol.add_argument("--force", action="store_true", help="replace an existing key file")
    enrol.set_defaults(func=_enrol)
    return node


def _load(path: Path) -> NodeConfig | None:
    try:
        return load_config(path)
    except ConfigError as exc:
        print(f"schakel node: config error: {exc}", file=sys.stderr)
        return None


def _database_failed(config: NodeConfig, exc: StorageError | SQLAlchemyError) -> int:
    """Print a database problem as one line naming ``database.url``; the exit code."""
    from gateway.storage import StorageError, describe  # noqa: PLC0415

    error = exc if isinstance(exc, StorageError) else describe(exc, config.database_url)
    kind = "cannot start" if error.unreachable else "config error"
    print(f"schakel node: {kind}: {config.source}: database.url: {error}", file=sys.stderr)
    return EXIT_STARTUP if error.unreachable else EXIT_CONFIG


def _migrate(args: argparse.Namespace) -> int:
    config = _load(args.config)
    if config is None:
        return EXIT_CONFIG
    configure_logging(config.node.log_level)
    from sqlalchemy.exc import SQLAlchemyError  # noqa: PLC0415 - keeps `schakel certs` light

    from gateway.rpc.server import open_database  # noqa: PLC0415
    from gateway.storage import StorageError, shown  # noqa: PLC0415

    try:
        open_database(config).dispose()
    except (StorageError, SQLAlchemyError) as exc:
        return _database_failed(config, exc)
    print(f"database {shown(config.database_url)} is at the newest revision")
    return 0


def _enrol(args: argparse.Namespace) -> int:
    from gateway.enrolment import enrol  # noqa: PLC0415 - keeps `schakel certs` light
    from gateway.errors import SchakelError  # noqa: PLC0415
    from policy.pseudonyms import KeyFileError, PseudonymError  # noqa: PLC0415

    try:
        config = load_config(args.config, enrolling=True)
    except ConfigError as exc:
        print(f"schakel node: config error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    target = config.pseudonyms.domain_key
    if target is None or not config.transcryptors:
        print(
            f"schakel node: config error: {config.source}: pseudonyms.domain_key and "
            "[[transcryptors]] are needed to enrol",
            file=sys.stderr,
        )
        return EXIT_CONFIG
    try:
        key = asyncio.run(enrol(config))
        key.save(
            target, force=args.force, passphrase_file=config.pseudonyms.domain_key_passphrase_file
        )
    except (SchakelError, KeyFileError, PseudonymError, OSError) as exc:
        print(f"schakel node: enrolment failed: {exc}", file=sys.stderr)
        return EXIT_STARTUP
    names = ", ".join(t.id for t in config.transcryptors)
    sealed = ", sealed" if config.pseudonyms.domain_key_passphrase_file else ""
    print(f"domain key of {key.domain} from {names}: {target} (mode 0600{sealed})")
    print(f"domain public key: {key.public_key.hex()}")
    return 0


async def serve(config: NodeConfig) -> None:
    """Run a node until SIGINT or SIGTERM, then stop gracefully."""
    from gateway.app import open_node  # noqa: PLC0415 - keeps `schakel certs` light
    from gateway.observability import otel  # noqa: PLC0415

    node = open_node(config)
    await node.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await node.stop()
    otel.shutdown()  # send the spans still queued


def _run(args: argparse.Namespace) -> int:
    # Before anything below imports grpc: grpc reads its tracers when first imported.
    traced = grpc_env.trace_handshakes()
    from sqlalchemy.exc import SQLAlchemyError  # noqa: PLC0415 - keeps `schakel certs` light

    from gateway.rpc.core_log import route_grpc_log  # noqa: PLC0415 - only a node routes it
    from gateway.rpc.server import StartupError  # noqa: PLC0415
    from gateway.storage import StorageError  # noqa: PLC0415
    from gateway.storage.exclusive import DatabaseInUseError  # noqa: PLC0415

    config = _load(args.config)
    if config is None:
        return EXIT_CONFIG
    configure_logging(config.node.log_level, stream=route_grpc_log(traced=traced))
    if not traced:
        get_logger("tls").warning(
            "handshake_log_incomplete",
            reason="grpc was imported before the node could turn on its handshake tracer, so "
            "refused handshakes are logged without their peer; set GRPC_TRACE=handshaker",
        )
    try:
        asyncio.run(serve(config))
    except ConfigError as exc:
        print(f"schakel node: config error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except StartupError as exc:
        print(f"schakel node: cannot start: {exc}", file=sys.stderr)
        return EXIT_STARTUP
    except DatabaseInUseError as exc:
        # Exit 2 like a config error: starting again will not help until the setup changes.
        print(f"schakel node: cannot start: {config.source}: database.url: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except (StorageError, SQLAlchemyError) as exc:
        return _database_failed(config, exc)
    return 0
