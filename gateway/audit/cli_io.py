"""What the ``schakel audit`` commands share: exit codes, one-line failures,
the pinned-key and time options, opening a database without ever creating
one, and a progress bar."""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from gateway.audit import notes, verify

OK, FINDING, USAGE = 0, 1, 2


def key_args(p: argparse.ArgumentParser) -> None:
    """The pinned-key options: the log's vkey, witnesses' vkeys, the quorum."""
    p.add_argument(
        "--log-key", required=True, help="the node's checkpoint vkey (name+id+key, or a file)"
    )
    p.add_argument(
        "--witness-key",
        action="append",
        default=[],
        help="a witness's cosignature vkey (text or file; repeatable)",
    )
    p.add_argument(
        "--quorum", type=int, default=0, help="cosignatures a checkpoint needs (default 0)"
    )


def moment(text: str) -> datetime:
    """An ISO 8601 option value; UTC when it names no zone."""
    try:
        value = datetime.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO 8601 time") from exc
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def vkey(text: str) -> notes.Verifier:
    """A vkey given as text or as a file holding it."""
    path = Path(text)
    source = path.read_text(encoding="utf-8") if "+" not in text and path.is_file() else text
    return notes.Verifier.from_vkey(source)


def load_keys(args: argparse.Namespace) -> verify.Keys:
    """The pinned keys the options name; ValueError when the quorum cannot be met."""
    witnesses = [vkey(w) for w in args.witness_key]
    if not 0 <= args.quorum <= len(witnesses):
        raise ValueError(f"--quorum {args.quorum} needs that many --witness-key options")
    return verify.Keys(vkey(args.log_key), witnesses, args.quorum)


def node_args(p: argparse.ArgumentParser) -> None:
    """The options that reach a running node with the officer's certificate."""
    group = p.add_argument_group(
        "a running node (--node)",
        "Asks the node over AuditService with an officer certificate (role fg or "
        "procesregisseur of that node): no database access, no node secrets.",
    )
    group.add_argument("--cert", type=Path, help="the officer's certificate (PEM)")
    group.add_argument("--key", type=Path, help="the officer's private key (PEM)")
    group.add_argument("--key-passphrase-file", type=Path, help="passphrase of an encrypted key")
    group.add_argument("--ca", type=Path, help="the federation CA certificate (PEM)")
    group.add_argument(
        "--node-id",
        help="the node's id, whose certificate the node must present "
        "(default: the name of --log-key)",
    )
    group.add_argument(
        "--server-name", help="the DNS name the node's certificate must carry, if not its own"
    )


def fail(message: str) -> int:
    """Print ``message`` as the one line of a usage problem; exit code 2."""
    print(f"schakel audit: {message}", file=sys.stderr)
    return USAGE


class ProgressBar:
    """A one-line progress bar on stderr, drawn only on a terminal."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.enabled = sys.stderr.isatty()
        self.start = time.monotonic()

    def __call__(self, done: int, total: int) -> None:
        """Draw ``done`` of ``total`` (0: unknown) with the rate so far."""
        if not self.enabled:
            return
        rate = done / max(time.monotonic() - self.start, 1e-9)
        if total:
            filled = int(30 * min(done, total) / total)
            bar = "#" * filled + "-" * (30 - filled)
            text = f"\r{self.label} [{bar}] {done:,}/{total:,} ({rate:,.0f}/s)"
        else:
            text = f"\r{self.label} {done:,} ({rate:,.0f}/s)"
        sys.stderr.write(text)
        sys.stderr.flush()

    def close(self) -> None:
        """End the bar's line."""
        if self.enabled:
            sys.stderr.write("\n")


class DatabaseError(Exception):
    """``--db`` cannot be used; the message says why in one line."""


def open_engine(url: str) -> Engine:
    """An engine on an existing, migrated database; never creates one."""
    from gateway import storage  # noqa: PLC0415 - keeps `schakel --help` light

    try:
        engine = storage.make_engine(url, create=False)
        storage.require_schema(engine)
    except storage.StorageError as exc:
        raise DatabaseError(f"--db {exc}") from None
    return engine


def db_failed(exc: SQLAlchemyError | DatabaseError, url: str) -> int:
    """Report a database problem met while a command ran; exit code 2."""
    if isinstance(exc, DatabaseError):
        return fail(str(exc))
    from gateway.storage import describe  # noqa: PLC0415

    return fail(f"--db {describe(exc, url)}")
