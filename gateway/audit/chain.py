"""Verification of a stream of leaves against signed checkpoints, in constant memory.

Only pinned public keys are trusted: the log's checkpoint key and the
witnesses' cosignature keys. The leaves arrive in index order (from a
database or an export bundle) and the verifier keeps a compact range of at
most 64 hashes. It checks

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

import hashlib
import itertools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from google.protobuf.message import DecodeError
from schakel.v1 import audit_pb2

from gateway.audit import merkle, notes, records

Progress = Callable[[int, int], None]
LeafRow = tuple[int, bytes, bytes | None]
"""(index, leaf hash, body or None once erased); a database row may carry more after these."""
RowCheck = Callable[[Sequence[tuple[object, ...]]], None]
"""A further check of each chunk of rows, run after the chain checks of that chunk."""


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
    erased: int = 0
    """Leaves whose body was erased at the end of retention (checked by their hash only)."""

    def to_proto(self) -> audit_pb2.VerifyLogResponse:
        """As the API's VerifyLogResponse."""
        response = audit_pb2.VerifyLogResponse(
            ok=self.ok, size=self.size, root=self.root, message=self.message
        )
        if self.first_bad_index is not None:
            response.first_bad_index = self.first_bad_index
        return response


class CheckFailedError(Exception):
    """A finding: the message says what, ``index`` names the first leaf concerned."""

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
        except notes.KeyMismatchError as exc:
            raise CheckFailedError(
                f"the checkpoints are not signed by the pinned log key: {exc}. The likely "
                "cause is a wrong log key: compare it with the log_key the node logged "
                "(audit_key_created) or the federation directory lists"
            ) from exc
        except notes.NoteError as exc:
            raise CheckFailedError(f"a checkpoint is forged or damaged: {exc}") from exc
        size = checkpoint.size
        if size in seen and seen[size] != checkpoint.root:
            raise CheckFailedError(f"fork: two validly signed checkpoints of size {size} differ")
        seen[size] = checkpoint.root
        cosigned = 0
        for sig in parsed.signatures:
            witness = witnesses.get((sig.name, sig.key_id))
            if witness is None:
                continue
            try:
                notes.verify_cosignature(parsed.text, sig, witness)
            except notes.NoteError as exc:
                raise CheckFailedError(f"checkpoint at size {size}: {exc}") from exc
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
        raise CheckFailedError(f"leaf {index}: its bytes are not an audit record", index) from exc
    return record.log_index


CHUNK = 1 << 14
"""Leaves checked per step; a power of two so steps stay aligned to whole subtrees."""


def _check_chunk(chunk: list[LeafRow], start: int) -> None:
    """Positions, leaf hashes and embedded log indexes of consecutive leaves from ``start``.

    Written as whole-list operations (the hot path); the first failure is
    then located leaf by leaf.
    """
    if [row[0] for row in chunk] != list(range(start, start + len(chunk))):
        for expected, (index, *_) in enumerate(chunk, start):
            if index > expected:
                raise CheckFailedError(f"leaf {expected} is missing (deleted)", expected)
            if index < expected:
                raise CheckFailedError(
                    f"leaf {expected}: a second copy of leaf {index} stands in its place",
                    expected,
                )
    sha256 = hashlib.sha256
    computed = [h if d is None else sha256(b"\x00" + d).digest() for _, h, d, *_ in chunk]
    if computed != [row[1] for row in chunk]:
        for (index, digest, *_), mine in zip(chunk, computed, strict=True):
            if mine != digest:
                raise CheckFailedError(f"leaf {index}: its bytes do not match its leaf hash", index)
    # A record's position is read from the tail of its bytes (log_index is
    # serialised last); the full parse runs only where the tail disagrees.
    tails = _suffixes(start, len(chunk))
    datas = [row[2] for row in chunk]
    if tails is not None and all(map(_ends_with, datas, tails)):
        return
    suffix = records.index_suffix
    for index, _, data, *_ in chunk:
        if data is not None and (not index or not data.endswith(suffix(index))):
            placed = _placed_at(data, index)
            if placed != index:
                raise CheckFailedError(
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
    check_rows: RowCheck | None = None,
) -> Report:
    """Verify a stream of (index, leaf_hash, data) against signed checkpoints.

    ``head`` is the stored head row (size, root), when there is one;
    ``extra_checkpoints`` are notes obtained elsewhere (from a witness, an
    earlier report) that must agree with this log too. ``check_rows`` runs
    on each chunk once its leaves are proven (e.g. the database's index
    columns against the bodies); it raises :class:`CheckFailedError`.
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
        expected = erased = 0
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
                        raise CheckFailedError(
                            f"checkpoint at size {nxt.size} does not match the stored leaves:"
                            f" leaves {last_size}..{nxt.size - 1} were rewritten, or the log"
                            " forked",
                            last_size,
                        )
                    last_size = nxt.size
                    nxt = next(pending, None)
            # After the signed roots: a rewritten body is reported as such,
            # not as the index columns that no longer match it.
            if check_rows is not None:
                check_rows(chunk)
            erased += sum(1 for row in chunk if row[2] is None)
            expected += len(chunk)
            if progress is not None:
                progress(expected, total)
        if nxt is not None:
            raise CheckFailedError(
                f"checkpoint at size {nxt.size} covers more than the {expected} stored leaves"
                " (leaves deleted from the tail)",
                expected,
            )
        root = compact.root()
        if head is not None:
            _check_head_size(head[0], expected, last_size)
            if head[1] != root:
                raise CheckFailedError("the head root does not match the stored leaves", last_size)
    except CheckFailedError as failure:
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
            f" {len(final)} with a quorum of {keys.quorum} cosignatures;"
            f" {erased} bodies erased (checked by their leaf hash)"
        ),
        checkpoints=len(checkpoints),
        final_checkpoints=len(final),
        latest_final_size=final[-1].size if final else 0,
        erased=erased,
    )
    if checkpoints and checkpoints[-1].size < expected:
        report.warnings.append(
            f"leaves {checkpoints[-1].size}..{expected - 1} are not yet covered by a checkpoint"
        )
    return report


def _check_head_size(head_size: int, stored: int, signed: int) -> None:
    """The head's size against the leaves stored; ``signed`` is the largest checkpoint matched."""
    if head_size > stored:
        raise CheckFailedError(
            f"the head says {head_size} leaves but only {stored} are stored"
            f" (leaves {stored}..{head_size - 1} deleted from the tail)",
            stored,
        )
    if head_size < stored and signed > head_size:
        raise CheckFailedError(
            f"head-only rollback: the head says {head_size} leaves, but leaves"
            f" {head_size}..{stored - 1} are still stored and match the signed checkpoint"
            f" at size {signed}",
            head_size,
        )
    if head_size < stored:
        raise CheckFailedError(
            f"leaves {head_size}..{stored - 1} are stored beyond the head (size {head_size}):"
            " the head was rolled back, or rows were added past it",
            head_size,
        )
