"""Offline verification of an audit log: a database or an exported bundle.

Only pinned public keys are trusted: the log's checkpoint key and the
witnesses' cosignature keys. The verifier streams the leaves in index order
(constant memory: a compact range of at most 64 hashes), and checks

- that every index from 0 is present exactly once (deletion, insertion);
- that each stored body hashes to its leaf hash (an edited record);
- that each body's ``log_index`` is its position (a moved or inserted record);
- every checkpoint's signature, its cosignatures and the quorum;
- that every checkpoint root equals the root recomputed at its size, which
  also proves each checkpoint consistent with every earlier one (a fork or
  a rewrite of the leaves with their hashes);
- that the head row matches the recomputed tree.

It stops at the first failure and names the leaf (or the leaf range between
two checkpoints when only a signed root can tell).
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy as sa
from google.protobuf.message import DecodeError
from schakel.v1 import audit_pb2
from sqlalchemy import Engine

from gateway.audit import merkle, notes, records, tables
from gateway.audit.store import read_head

Progress = Callable[[int, int], None]
LeafRow = tuple[int, bytes, bytes | None]
BATCH = 1 << 14


@dataclass
class Report:
    """The outcome of a verification."""

    ok: bool
    size: int
    root: bytes
    message: str
    first_bad_index: int | None = None
    checkpoints: int = 0
    final_checkpoints: int = 0
    latest_final_size: int = 0
    warnings: list[str] = field(default_factory=list)

    def to_proto(self) -> audit_pb2.VerifyLogResponse:
        """As the API's VerifyLogResponse."""
        response = audit_pb2.VerifyLogResponse(
            ok=self.ok, size=self.size, root=self.root, message=self.message
        )
        if self.first_bad_index is not None:
            response.first_bad_index = self.first_bad_index
        return response


class _CheckFailedError(Exception):
    def __init__(self, message: str, index: int | None = None) -> None:
        super().__init__(message)
        self.index = index


@dataclass(frozen=True)
class _Checkpoint:
    size: int
    root: bytes
    cosigned: int


@dataclass(frozen=True)
class Keys:
    """What an officer pins: the log's key, the witnesses' keys and the quorum."""

    log: notes.Verifier
    witnesses: Sequence[notes.Verifier] = ()
    quorum: int = 0


def _check_checkpoints(notes_by_row: Iterable[bytes], keys: Keys) -> list[_Checkpoint]:
    witnesses = {(w.name, w.key_id): w for w in keys.witnesses}
    seen: dict[int, bytes] = {}
    out = []
    for note in notes_by_row:
        try:
            checkpoint, parsed = notes.open_checkpoint(note, keys.log)
        except notes.NoteError as exc:
            raise _CheckFailedError(f"a checkpoint is forged or damaged: {exc}") from exc
        size = checkpoint.size
        if size in seen and seen[size] != checkpoint.root:
            raise _CheckFailedError(f"fork: two validly signed checkpoints of size {size} differ")
        seen[size] = checkpoint.root
        cosigned = 0
        for sig in parsed.signatures:
            witness = witnesses.get((sig.name, sig.key_id))
            if witness is None:
                continue
            try:
                notes.verify_cosignature(parsed.text, sig, witness)
            except notes.NoteError as exc:
                raise _CheckFailedError(f"checkpoint at size {size}: {exc}") from exc
            cosigned += 1
        out.append(_Checkpoint(size, checkpoint.root, cosigned))
    out.sort(key=lambda c: c.size)
    return out


def _placed_at(data: bytes, index: int) -> int:
    """The ``log_index`` inside leaf bytes (the position the log wrote them at)."""
    record = audit_pb2.AuditRecord()
    try:
        record.ParseFromString(data)
    except DecodeError as exc:
        raise _CheckFailedError(f"leaf {index}: its bytes are not an audit record", index) from exc
    return record.log_index


CHUNK = 1 << 14
"""Leaves checked per step; a power of two so steps stay aligned to whole subtrees."""


def _check_chunk(chunk: list[LeafRow], start: int) -> None:
    """Positions, leaf hashes and embedded log indexes of consecutive leaves from ``start``.

    Written as whole-list operations (the hot path); the first failure is
    then located leaf by leaf.
    """
    if [row[0] for row in chunk] != list(range(start, start + len(chunk))):
        for expected, (index, _, _) in enumerate(chunk, start):
            if index > expected:
                raise _CheckFailedError(f"leaf {expected} is missing (deleted)", expected)
            if index < expected:
                raise _CheckFailedError(
                    f"leaf {expected}: a second copy of leaf {index} stands in its place",
                    expected,
                )
    sha256 = hashlib.sha256
    computed = [h if d is None else sha256(b"\x00" + d).digest() for _, h, d in chunk]
    if computed != [row[1] for row in chunk]:
        for (index, digest, _), mine in zip(chunk, computed, strict=True):
            if mine != digest:
                raise _CheckFailedError(
                    f"leaf {index}: its bytes do not match its leaf hash", index
                )
    # A record's position is read from the tail of its bytes (log_index is
    # serialised last); the full parse runs only where the tail disagrees.
    tails = _suffixes(start, len(chunk))
    datas = [row[2] for row in chunk]
    if tails is not None and all(map(_ends_with, datas, tails)):
        return
    suffix = records.index_suffix
    for index, _, data in chunk:
        if data is not None and (not index or not data.endswith(suffix(index))):
            placed = _placed_at(data, index)
            if placed != index:
                raise _CheckFailedError(
                    f"leaf {index}: holds the record written at position {placed}"
                    " (moved or inserted)",
                    index,
                )


def _ends_with(data: bytes | None, tail: bytes) -> bool:
    return data is not None and data.endswith(tail)


# In a chunk aligned to 2**14, the two low varint bytes of log_index run
# through this table and the higher bytes are the same for the whole chunk.
_LOW_VARINT = [
    b"\x98\x01" + bytes(((j & 0x7F) | 0x80, ((j >> 7) & 0x7F) | 0x80)) for j in range(CHUNK)
]


def _suffixes(start: int, count: int) -> list[bytes] | None:
    """The log_index tails of leaves start..start+count-1, when the chunk is aligned."""
    if start < CHUNK or start % CHUNK:
        return None
    high = records.index_suffix(start >> 14)[2:]
    return [low + high for low in _LOW_VARINT[:count]]


def _append_block(compact: merkle.CompactRange, digests: list[bytes]) -> None:
    """Append leaf hashes to ``compact`` a whole aligned subtree at a time."""
    sha256 = hashlib.sha256
    stack = compact.hashes
    pos = 0
    while pos < len(digests):
        size = compact.size
        width = size & -size if size else 1 << 62
        while width > len(digests) - pos:
            width >>= 1
        level = digests[pos : pos + width]
        while len(level) > 1:
            left, right = level[0::2], level[1::2]
            level = [sha256(b"\x01" + a + b).digest() for a, b in zip(left, right, strict=True)]
        stack.append(level[0])
        n = size // width
        while n & 1:
            top = stack.pop()
            stack[-1] = sha256(b"\x01" + stack[-1] + top).digest()
            n >>= 1
        compact.size = size + width
        pos += width


def verify_leaves(
    leaves: Iterable[LeafRow],
    checkpoint_notes: Iterable[bytes],
    keys: Keys,
    *,
    head: tuple[int, bytes] | None = None,
    extra_checkpoints: Sequence[bytes] = (),
    progress: Progress | None = None,
    total: int = 0,
) -> Report:
    """Verify a stream of (index, leaf_hash, data) against signed checkpoints.

    ``head`` is the stored head row (size, root), when there is one;
    ``extra_checkpoints`` are notes obtained elsewhere (from a witness, an
    earlier report) that must agree with this log too.
    """
    compact = merkle.CompactRange()
    checkpoints: list[_Checkpoint] = []
    try:
        checkpoints = _check_checkpoints([*checkpoint_notes, *extra_checkpoints], keys)
        pending = iter(checkpoints)
        nxt = next(pending, None)
        last_size = 0
        while nxt is not None and nxt.size == 0:
            nxt = next(pending, None)
        expected = 0
        rows = iter(leaves)
        while chunk := list(itertools.islice(rows, CHUNK)):
            _check_chunk(chunk, expected)
            digests = [row[1] for row in chunk]
            done = 0
            # Cut the chunk where a checkpoint falls, to compare its root there.
            while done < len(digests):
                end = len(digests)
                if nxt is not None and nxt.size - expected < end:
                    end = nxt.size - expected
                _append_block(compact, digests[done:end])
                done = end
                while nxt is not None and nxt.size == compact.size:
                    if compact.root() != nxt.root:
                        raise _CheckFailedError(
                            f"checkpoint at size {nxt.size} does not match the stored leaves:"
                            f" leaves {last_size}..{nxt.size - 1} were rewritten, or the log"
                            " forked",
                            last_size,
                        )
                    last_size = nxt.size
                    nxt = next(pending, None)
            expected += len(chunk)
            if progress is not None:
                progress(expected, total)
        if nxt is not None:
            raise _CheckFailedError(
                f"checkpoint at size {nxt.size} covers more than the {expected} stored leaves"
                " (leaves deleted from the tail)",
                expected,
            )
        root = compact.root()
        if head is not None:
            if head[0] != expected:
                raise _CheckFailedError(
                    f"the head says {head[0]} leaves but {expected} are stored",
                    min(head[0], expected),
                )
            if head[1] != root:
                raise _CheckFailedError("the head root does not match the stored leaves", last_size)
    except _CheckFailedError as failure:
        return Report(
            ok=False,
            size=compact.size,
            root=compact.root(),
            message=str(failure),
            first_bad_index=failure.index,
            checkpoints=len(checkpoints),
        )
    if progress is not None:
        progress(expected, total)
    final = [c for c in checkpoints if c.cosigned >= keys.quorum]
    report = Report(
        ok=True,
        size=expected,
        root=root,
        message=(
            f"{expected} leaves verified; {len(checkpoints)} checkpoints consistent,"
            f" {len(final)} with a quorum of {keys.quorum} cosignatures"
        ),
        checkpoints=len(checkpoints),
        final_checkpoints=len(final),
        latest_final_size=final[-1].size if final else 0,
    )
    if checkpoints and checkpoints[-1].size < expected:
        report.warnings.append(
            f"leaves {checkpoints[-1].size}..{expected - 1} are not yet covered by a checkpoint"
        )
    return report


_PAGE_SQL = (
    "SELECT idx, leaf_hash, data FROM audit_leaf WHERE idx > {param} AND idx < {end}"
    " ORDER BY idx LIMIT {batch}"
)


def _pages(engine: Engine, batch: int, end: int) -> Iterator[list[tuple[int, bytes, bytes | None]]]:
    param = "?" if engine.dialect.paramstyle == "qmark" else "%(after)s"
    sql = _PAGE_SQL.format(param=param, end=int(end), batch=int(batch))
    after = -1
    with engine.connect() as conn:
        raw = conn.connection.driver_connection
        assert raw is not None
        cursor = raw.cursor()
        try:
            while True:
                cursor.execute(sql, (after,) if param == "?" else {"after": after})
                rows = cursor.fetchall()
                if not rows:
                    return
                yield rows
                after = rows[-1][0]
        finally:
            cursor.close()


def db_leaves(engine: Engine, end: int, batch: int = BATCH) -> Iterator[LeafRow]:
    """Stream (index, leaf_hash, data) below ``end`` from a database in keyset-paged batches.

    Plain driver cursors: this loop is the verifier's hot path. One page is
    held at a time, so memory stays flat whatever the log's size. (A
    prefetching thread was measured slower: the pages are built under the GIL.)
    """
    for page in _pages(engine, batch, end):
        yield from page


def verify_database(
    engine: Engine,
    keys: Keys,
    extra_checkpoints: Sequence[bytes] = (),
    progress: Progress | None = None,
) -> Report:
    """Verify a node database, also while the node keeps appending.

    Checkpoints are read before the head and the leaves are read up to the
    head's size: a live log then yields a consistent snapshot, and a
    checkpoint beyond the head can only mean a shortened log.
    """
    cp, cos = tables.checkpoint, tables.cosignature
    with engine.connect() as conn:
        lines: dict[int, list[bytes]] = {}
        for size, line in conn.execute(sa.select(cos.c.size, cos.c.line).order_by(cos.c.witness)):
            lines.setdefault(int(size), []).append(bytes(line))
        checkpoint_notes = [
            bytes(note) + b"".join(lines.get(int(size), []))
            for size, note in conn.execute(sa.select(cp.c.size, cp.c.note).order_by(cp.c.size))
        ]
        head = read_head(conn)
    return verify_leaves(
        db_leaves(engine, head.size),
        checkpoint_notes,
        keys,
        head=(head.size, head.root),
        extra_checkpoints=extra_checkpoints,
        progress=progress,
        total=head.size,
    )


class BundleError(ValueError):
    """An export bundle is malformed; the message names the line."""


def verify_bundle(
    path: Path,
    keys: Keys,
    extra_checkpoints: Sequence[bytes] = (),
    progress: Progress | None = None,
) -> Report:
    """Verify an export bundle written by :func:`gateway.audit.export.export`.

    Raises :class:`BundleError` when the file is not a well-formed bundle.
    """
    with path.open("r", encoding="utf-8") as stream:
        entries = _entries(stream)
        header = next(entries, None)
        if header is None:
            raise BundleError("the bundle is empty")
        line_no, obj = header
        if obj.get("type") != "header" or obj.get("format") != EXPORT_FORMAT:
            raise BundleError(f"line 1: not a {EXPORT_FORMAT} header")
        total, head = _bundle_header(obj)
        checkpoint_notes: list[bytes] = []
        first: tuple[int, dict[str, object]] | None = None
        for line_no, obj in entries:
            if obj.get("type") != "checkpoint":
                first = (line_no, obj)
                break
            note = obj.get("note")
            if not isinstance(note, str):
                raise BundleError(f"line {line_no}: checkpoint without a note")
            checkpoint_notes.append(note.encode("utf-8"))

        def leaves() -> Iterator[LeafRow]:
            if first is None:
                return
            yield _bundle_leaf(*first)
            for number, entry in entries:
                yield _bundle_leaf(number, entry)

        return verify_leaves(
            leaves(),
            checkpoint_notes,
            keys,
            head=head,
            extra_checkpoints=extra_checkpoints,
            progress=progress,
            total=total,
        )


EXPORT_FORMAT = "schakel-audit-export/v1"


def _entries(stream: Iterable[str]) -> Iterator[tuple[int, dict[str, object]]]:
    for line_no, line in enumerate(stream, 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise BundleError(f"line {line_no}: not JSON") from exc
        if not isinstance(obj, dict):
            raise BundleError(f"line {line_no}: not a JSON object")
        yield line_no, obj


def _bundle_header(obj: dict[str, object]) -> tuple[int, tuple[int, bytes] | None]:
    try:
        size = int(str(obj["size"]))
        root = base64.b64decode(str(obj["root"]), validate=True)
    except (KeyError, ValueError) as exc:
        raise BundleError("line 1: header lacks a valid size and root") from exc
    return size, (size, root)


def _bundle_leaf(line_no: int, obj: dict[str, object]) -> LeafRow:
    if obj.get("type") != "leaf":
        raise BundleError(f"line {line_no}: expected a leaf entry, got {obj.get('type')!r}")
    try:
        data = obj.get("data")
        return (
            int(str(obj["index"])),
            base64.b64decode(str(obj["leaf_hash"]), validate=True),
            None if data is None else base64.b64decode(str(data), validate=True),
        )
    except (KeyError, ValueError) as exc:
        raise BundleError(f"line {line_no}: malformed leaf entry") from exc
