"""A runnable example partner: connects a SQL database or a drop folder to its node.

    python -m adapters.examples.example_partner --help

``serve`` builds the pseudonym index, keeps the task stream open and answers
hit/no-hit and uitvraag tasks from the source, refreshing the index (or
reading new drop files) every ``--refresh`` seconds until Ctrl-C. ``refer``
submits a referral for a BSN read from standard input (never from the
command line, where other users of the machine could see it in ``ps``).
See adapters/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

import sqlalchemy as sa
import structlog
from schakel.v1 import common_pb2, partner_pb2

from adapters.filedrop import DropSchema, FileDropAdapter
from adapters.index import PseudonymIndex
from adapters.mapping import MappingError
from adapters.sdk import (
    Adapter,
    AdapterRunner,
    DomainKey,
    KeyFileError,
    PartnerClient,
    PartnerRpcError,
    PseudonymError,
    encrypt_subject,
)
from adapters.sql import SqlAdapter, SqlMapping

log = structlog.get_logger(__name__)


def _connection_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--node", required=True, help="the node's partner endpoint, host:port")
    parser.add_argument("--cert", type=Path, required=True, help="this partner's certificate (PEM)")
    parser.add_argument("--key", type=Path, required=True, help="this partner's private key (PEM)")
    parser.add_argument(
        "--ca", type=Path, required=True, help="the federation CA certificate (PEM)"
    )
    parser.add_argument(
        "--server-name", help="name to check in the node's certificate (default: the host)"
    )
    parser.add_argument(
        "--domain-key",
        type=Path,
        required=True,
        help="this organisation's schakel-pep-domain/v1 key file (mode 0600)",
    )
    parser.add_argument(
        "--domain-key-passphrase-file",
        type=Path,
        help="the file whose first line is the passphrase the domain key file is sealed with",
    )
    parser.add_argument(
        "--purpose",
        required=True,
        help="processing activity id, e.g. zvh.complexe-casuistiek",
    )
    parser.add_argument("--timeout", type=float, default=10.0, help="deadline per call, seconds")


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    parser = argparse.ArgumentParser(
        prog="python -m adapters.examples.example_partner",
        description="An example Schakel partner system built on the partner SDK.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="answer the node's tasks from a data source")
    _connection_args(serve)
    source = serve.add_mutually_exclusive_group(required=True)
    source.add_argument("--sql-mapping", type=Path, help="SQL adapter mapping (.yaml or .toml)")
    source.add_argument("--drop-schema", type=Path, help="file-drop schema (.yaml or .toml)")
    serve.add_argument("--database", help="SQLAlchemy URL of the partner database (SQL adapter)")
    serve.add_argument(
        "--index-database",
        help="SQLAlchemy URL for the pseudonym index (default: --database; use a separate one "
        "when the source account is read-only)",
    )
    serve.add_argument("--drop-dir", type=Path, help="the drop folder (file-drop adapter)")
    serve.add_argument(
        "--store", help="SQLAlchemy URL of the file-drop store (default: SQLite in the drop folder)"
    )
    serve.add_argument(
        "--refresh", type=float, default=300.0, help="seconds between index refreshes / drop scans"
    )
    serve.add_argument(
        "--index-only", action="store_true", help="build the index (or read the drop) and exit"
    )
    refer = commands.add_parser("refer", help="submit a referral; reads the BSN from stdin")
    _connection_args(refer)
    refer.add_argument("--theme", required=True, help="case theme, e.g. complexe-casuistiek")
    refer.add_argument("--external-ref", required=True, help="your own reference for the case")
    refer.add_argument("--criterion", action="append", default=[], help="criteria code (repeat)")
    refer.add_argument("--reason", action="append", default=[], help="reason code (repeat)")
    refer.add_argument(
        "--idempotency-key",
        help="reuse the key of an earlier attempt of this referral (default: a fresh one)",
    )
    return parser


def _client(args: argparse.Namespace) -> PartnerClient:
    return PartnerClient.from_files(
        args.node,
        cert_file=args.cert,
        key_file=args.key,
        ca_file=args.ca,
        server_name=args.server_name,
        timeout=args.timeout,
    )


def _print_delivery(local_keys: Sequence[str], task: partner_pb2.PartnerTask) -> None:
    # An example only: a real partner files the facts in its own case system.
    categories = sorted({f.category for f in task.facts})
    print(
        f"delivery {task.task_id}: {len(task.facts)} fact(s) of {categories} "
        f"for {len(local_keys)} local record(s)",
        flush=True,
    )


def _source(
    args: argparse.Namespace, client: PartnerClient, keys: DomainKey
) -> tuple[Adapter, Callable[[], Awaitable[None]]]:
    """The adapter and the coroutine that refreshes its index from the source."""

    def pseudonymise(
        batch: Sequence[common_pb2.EncryptedPseudonym],
    ) -> Awaitable[list[common_pb2.EncryptedPseudonym]]:
        return client.pseudonymise(batch, purpose=args.purpose)

    if args.sql_mapping:
        if not args.database:
            raise MappingError("--sql-mapping needs --database")
        engine = sa.create_engine(args.database)
        index_engine = sa.create_engine(args.index_database) if args.index_database else engine
        index = PseudonymIndex(index_engine)
        index.create()
        sql = SqlAdapter(
            engine, SqlMapping.load(args.sql_mapping), index, on_delivery=_print_delivery
        )
        sql.check()

        async def sync_sql() -> None:
            report = await index.sync(sql.subjects(), pseudonymise, keys)
            print(
                f"index: +{report.added} -{report.removed}, {len(report.rejected)} rejected",
                flush=True,
            )

        return sql, sync_sql
    if not args.drop_dir:
        raise MappingError("--drop-schema needs --drop-dir")
    store = args.store or f"sqlite:///{args.drop_dir / '.schakel-filedrop.db'}"
    drop = FileDropAdapter(
        args.drop_dir,
        DropSchema.load(args.drop_schema),
        sa.create_engine(store),
        on_delivery=_print_delivery,
    )
    drop.create()

    async def scan_drop() -> None:
        for report in await drop.process(pseudonymise, keys):
            print(
                f"{report.name}: {report.accepted} accepted, {report.quarantined} quarantined"
                + (" (seen before)" if report.duplicate else "")
                + (f" (refused: {report.refused})" if report.refused else ""),
                flush=True,
            )

    return drop, scan_drop


async def serve(args: argparse.Namespace) -> int:
    """Build the index, then answer tasks until SIGINT or SIGTERM."""
    keys = DomainKey.load(args.domain_key, args.domain_key_passphrase_file)
    async with _client(args) as client:
        adapter, refresh = _source(args, client, keys)
        await refresh()
        if args.index_only:
            return 0
        runner = AdapterRunner(client, adapter, keys=keys)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, runner.stop)

        async def keep_fresh() -> None:
            while True:
                await asyncio.sleep(args.refresh)
                try:
                    await refresh()
                except (PartnerRpcError, OSError, sa.exc.SQLAlchemyError) as exc:
                    log.warning(
                        "refresh failed; retrying at the next interval", error=type(exc).__name__
                    )

        refresher = asyncio.create_task(keep_fresh())
        print(f"serving tasks from {args.node}; Ctrl-C stops", flush=True)
        try:
            await runner.run()
        finally:
            refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await refresher
        print(f"stopped: {dict(runner.stats)}", flush=True)
    return 0


async def refer(args: argparse.Namespace) -> int:
    """Submit one referral for the BSN on standard input and print the case."""
    keys = DomainKey.load(args.domain_key, args.domain_key_passphrase_file)
    bsn = sys.stdin.readline().strip()
    subject = encrypt_subject("bsn", bsn, keys.global_public_key)
    async with _client(args) as client:
        response = await client.submit_referral(
            purpose=args.purpose,
            subject=subject,
            theme=args.theme,
            external_ref=args.external_ref,
            criteria=args.criterion,
            reason_codes=args.reason,
            idempotency_key=args.idempotency_key,
        )
    state = "opened" if response.created else "already open (retry)"
    print(f"case {response.case_ref.node_id}/{response.case_ref.case_id} {state}", flush=True)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit code."""
    args = build_parser().parse_args(argv)
    command = serve if args.command == "serve" else refer
    try:
        return asyncio.run(command(args))
    except (MappingError, KeyFileError, PseudonymError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except PartnerRpcError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
