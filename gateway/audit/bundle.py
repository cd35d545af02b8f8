"""Reading an export bundle (JSON lines, written by :mod:`gateway.audit.export`) for verification.

Line 1 is the header (format, size and root of the head); then every
checkpoint with its cosignatures; then every leaf in index order. Only the
bytes and hashes are trusted; the decoded record beside them is for reading.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from gateway.audit.chain import Keys, LeafRow, Progress, Report, verify_leaves

EXPORT_FORMAT = "schakel-audit-export/v1"


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
