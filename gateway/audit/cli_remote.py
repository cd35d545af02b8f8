"""``schakel audit verify | query | inzage --node HOST:PORT``: the same commands against a
running node over AuditService, with the officer's certificate (:mod:`gateway.audit.remote`).

Exit codes as the local commands: 0 success, 1 a finding, 2 a usage problem
or a node that cannot be reached or refuses (one line naming ``--node``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import grpc
from google.protobuf import json_format
from schakel.v1 import audit_pb2, audit_pb2_grpc

from gateway.audit import inzage, notes, remote
from gateway.audit.cli_io import FINDING, OK, fail, load_keys
from policy.pseudonyms import KeyFileError, PseudonymError, Transcript, check_identifier

T = TypeVar("T")

if TYPE_CHECKING:
    _Call = Callable[[audit_pb2_grpc.AuditServiceAsyncStub], Awaitable[T]]


def _target(args: argparse.Namespace, node_id: str | None) -> remote.NodeTarget:
    missing = [f"--{n}" for n in ("cert", "key", "ca") if getattr(args, n) is None]
    if missing:
        raise ValueError(f"--node needs {', '.join(missing)}")
    node_id = args.node_id or node_id
    if node_id is None and args.server_name is None:
        raise ValueError("--node needs --node-id (or --server-name)")
    return remote.NodeTarget.from_files(
        args.node,
        node_id or "",
        (args.ca, args.cert, args.key),
        server_name=args.server_name,
        passphrase_file=args.key_passphrase_file,
    )


def _ask(target: remote.NodeTarget, call: _Call[T]) -> T:
    """Run ``call`` on a stub over one channel; gRPC failures become RemoteError."""

    async def run() -> T:
        async with target.channel() as channel:
            try:
                return await call(audit_pb2_grpc.AuditServiceStub(channel))
            except grpc.aio.AioRpcError as exc:
                raise remote.failed(exc, target) from None

    return asyncio.run(run())


def cmd_verify(args: argparse.Namespace) -> int:
    """Verify the node's log from outside; exit 1 on any finding."""
    try:
        keys = load_keys(args)
        target = _target(args, keys.log.name)
        seen = [p.read_bytes() for p in args.checkpoint]
        if args.state is not None and args.state.exists():
            seen.append(args.state.read_bytes())
    except (OSError, ValueError) as exc:
        return fail(str(exc))
    try:
        found = _ask(target, lambda stub: remote.verify(stub, keys, seen, args.sample))
    except remote.RemoteError as exc:
        return fail(str(exc))
    for line in found.checks:
        print(f"ok: {line}")
    if not found.ok:
        for line in found.findings:
            print(f"FAILED: {line}")
        return FINDING
    if args.state is not None:
        _save(args.state, found.latest)
        print(f"checkpoint kept in {args.state} for the next run's consistency check")
    print("OK: the node's log verifies against the pinned keys")
    return OK


def _save(path: Path, note: bytes) -> None:
    """Replace ``path`` with ``note`` at once, so a crash leaves the old one."""
    partial = path.with_suffix(path.suffix + ".partial")
    partial.write_bytes(note)
    os.replace(partial, path)


def cmd_query(args: argparse.Namespace, request: audit_pb2.AuditQuery) -> int:
    """Print the node's matching records as JSON lines, as the local query does."""
    try:
        target = _target(args, None)
    except (OSError, ValueError) as exc:
        return fail(str(exc))

    async def collect(stub: audit_pb2_grpc.AuditServiceAsyncStub) -> list[audit_pb2.AuditEntry]:
        return [entry async for entry in stub.QueryRecords(request)]

    try:
        entries = _ask(target, collect)
    except remote.RemoteError as exc:
        return fail(str(exc))
    for entry in entries:
        print(json.dumps(json_format.MessageToDict(entry), sort_keys=True))
    return OK


def federation_key(source: str) -> bytes:
    """Y from a ceremony transcript (ceremony.json) or as 64 hex characters."""
    path = Path(source)
    if path.is_file():
        transcript = Transcript.load(path)
        transcript.check()
        return transcript.global_public_key
    try:
        key = bytes.fromhex(source)
    except ValueError:
        raise ValueError(
            f"--federation-key {source!r} is neither a file nor 64 hex characters"
        ) from None
    if len(key) != 32:
        raise ValueError("--federation-key must be 32 bytes (64 hex characters)")
    return key


def cmd_inzage(args: argparse.Namespace, bsn: str) -> int:
    """The node's report about one person; the node records the lookup on their record."""
    try:
        check_identifier("bsn", bsn)
        keys = load_keys(args)
        target = _target(args, keys.log.name)
        y = federation_key(args.federation_key) if args.federation_key else None
    except (OSError, ValueError, KeyFileError, PseudonymError) as exc:
        return fail(str(exc))

    async def report(stub: audit_pb2_grpc.AuditServiceAsyncStub) -> inzage.SubjectReport:
        key = y if y is not None else await remote.federation_key(stub)
        subject = inzage.encrypt_bsn(bsn, key)
        return await remote.subject_report(stub, subject, keys)

    try:
        made = _ask(target, report)
    except (remote.RemoteError, inzage.InzageError, notes.NoteError) as exc:
        return fail(str(exc))
    except PseudonymError as exc:
        # Its message names the problem (a failed elfproef), never the value.
        return fail(str(exc))
    sys.stdout.write(inzage.render_text(made))
    if args.html:
        args.html.write_text(inzage.render_html(made), encoding="utf-8")
        print(f"HTML report: {args.html}")
    return OK
