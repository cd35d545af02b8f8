"""Export bundles: one JSON object per line, read back by :func:`verify.verify_bundle`.

Line 1 is a header (format, size, root of the head). Then every checkpoint
with its cosignatures (as the full signed note text), oldest first. Then
every leaf in index order: its index, leaf hash and exact bytes (base64,
``null`` once erased), plus the decoded record for reading. The decoded
record is a convenience derived from the bytes; verification only ever
trusts the bytes.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import TextIO

import sqlalchemy as sa
from google.protobuf import json_format
from sqlalchemy import Engine

from gateway.audit import records, tables
from gateway.audit.tree import read_head
from gateway.audit.verify import EXPORT_FORMAT, db_leaves


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def export(engine: Engine, out: TextIO, progress: Callable[[int, int], None] | None = None) -> int:
    """Write the whole log to ``out``; returns the number of leaves written.

    Reads the checkpoints, then the head, then only the leaves below the
    head's size, so a log that grows during the export yields a consistent
    bundle.
    """
    cp, cos = tables.checkpoint, tables.cosignature
    with engine.connect() as conn:
        lines: dict[int, list[bytes]] = {}
        for size, line in conn.execute(sa.select(cos.c.size, cos.c.line).order_by(cos.c.witness)):
            lines.setdefault(int(size), []).append(bytes(line))
        checkpoint_rows = conn.execute(
            sa.select(cp.c.size, cp.c.root, cp.c.note).order_by(cp.c.size)
        ).all()
        # After the checkpoints: every honest checkpoint is then within the head.
        head = read_head(conn)
    header = {"type": "header", "format": EXPORT_FORMAT, "size": head.size, "root": _b64(head.root)}
    out.write(json.dumps(header) + "\n")
    for size, root, note in checkpoint_rows:
        full = bytes(note) + b"".join(lines.get(int(size), []))
        entry = {
            "type": "checkpoint",
            "size": int(size),
            "root": _b64(bytes(root)),
            "note": full.decode("utf-8"),
        }
        out.write(json.dumps(entry, ensure_ascii=False) + "\n")
    written = 0
    for index, digest, data in db_leaves(engine, head.size):
        leaf: dict[str, object] = {
            "type": "leaf",
            "index": index,
            "leaf_hash": _b64(digest),
            "data": None if data is None else _b64(data),
            "erased": data is None,
        }
        if data is not None:
            leaf["record"] = json_format.MessageToDict(records.decode(data))
        out.write(json.dumps(leaf, sort_keys=True) + "\n")
        written += 1
        if progress is not None and written % 10_000 == 0:
            progress(written, head.size)
    return written
