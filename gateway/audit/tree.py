"""The stored Merkle tree, read side: the head row, range hashes from cached subtrees, leaves.

Perfect subtrees at levels that are multiples of :data:`SUBTREE_STRIDE` are
cached in ``audit_subtree`` by the writer, so any hash a proof needs costs at
most ``2**(SUBTREE_STRIDE - 1)`` row reads.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy import Connection

from gateway.audit import merkle, tables

SUBTREE_STRIDE = 4
"""Subtree hashes are cached at levels 4, 8, 12, ...: at most 8 reads per proof hash."""


@dataclass(frozen=True)
class Head:
    """The log's current size and root."""

    size: int
    root: bytes


def keep_subtree(out: list[dict[str, object]], level: int, index: int, digest: bytes) -> None:
    """Collect a finished perfect subtree as an ``audit_subtree`` row when its level is cached."""
    if level % SUBTREE_STRIDE == 0:
        out.append({"level": level, "idx": index, "hash": digest})


def read_head(conn: Connection) -> Head:
    """The head row as seen by ``conn``."""
    row = conn.execute(
        sa.select(tables.head.c.size, tables.head.c.root).where(tables.head.c.id == tables.HEAD_ID)
    ).one()
    return Head(int(row.size), bytes(row.root))


def check_size(conn: Connection, size: int) -> None:
    current = read_head(conn).size
    if not 0 <= size <= current:
        raise merkle.ProofError(f"tree size {size} is beyond the log's size {current}")


def _fold(hashes: list[bytes]) -> bytes:
    """The root of a perfect subtree given its 2**k bottom hashes."""
    while len(hashes) > 1:
        hashes = [merkle.node_hash(hashes[i], hashes[i + 1]) for i in range(0, len(hashes), 2)]
    return hashes[0]


def _perfect_hash(conn: Connection, level: int, index: int) -> bytes:
    stored = level - level % SUBTREE_STRIDE
    span = 1 << (level - stored)
    lo = index * span
    if stored == 0:
        t = tables.leaf
        rows = conn.execute(
            sa.select(t.c.leaf_hash).where(t.c.idx >= lo, t.c.idx < lo + span).order_by(t.c.idx)
        ).scalars()
    else:
        s = tables.subtree
        rows = conn.execute(
            sa.select(s.c.hash)
            .where(s.c.level == stored, s.c.idx >= lo, s.c.idx < lo + span)
            .order_by(s.c.idx)
        ).scalars()
    hashes = [bytes(h) for h in rows]
    if len(hashes) != span:
        raise merkle.ProofError(f"stored hashes missing under subtree ({level}, {index})")
    return _fold(hashes)


def range_hash(conn: Connection, start: int, end: int) -> bytes:
    """The Merkle tree hash of leaves [start, end), from cached subtrees and leaf hashes."""
    parts = [_perfect_hash(conn, lv, ix) for lv, ix in merkle.perfect_subtrees(start, end)]
    root = parts[-1]
    for h in reversed(parts[:-1]):
        root = merkle.node_hash(h, root)
    return root


def iter_leaves(
    conn: Connection, start: int = 0, end: int | None = None, batch: int = 10_000
) -> Iterator[tuple[int, bytes, bytes | None]]:
    """(index, leaf_hash, data) in index order, fetched in keyset-paged batches."""
    leaf = tables.leaf
    after = start - 1
    while True:
        query = sa.select(leaf.c.idx, leaf.c.leaf_hash, leaf.c.data).where(leaf.c.idx > after)
        if end is not None:
            query = query.where(leaf.c.idx < end)
        rows = conn.execute(query.order_by(leaf.c.idx).limit(batch)).all()
        if not rows:
            return
        for idx, digest, data in rows:
            yield int(idx), bytes(digest), None if data is None else bytes(data)
        after = int(rows[-1][0])
